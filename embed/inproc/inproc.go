// Package inproc exposes the embed stage (model registry, dynamic batcher
// and ONNX Runtime sessions) as a library, for in-process use by the
// end-to-end benchmark's no-HTTP reference pipeline. Services never import
// it: they call the embed service through its contract.
package inproc

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"go.opentelemetry.io/otel/metric/noop"

	"github.com/lookalike-dev/lookalike/shared/contract/embedv1"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"

	"github.com/lookalike-dev/lookalike/embed/internal/modelspec"
	"github.com/lookalike-dev/lookalike/embed/internal/ortsession"
	"github.com/lookalike-dev/lookalike/embed/internal/registry"
)

// Options locate the models and the runtime; zero batching values take the
// service defaults (32 images, 2 ms).
type Options struct {
	SpecDir, ModelDir, ORTLib string
	Models                    []string
	DefaultModel              string
	MaxBatch                  int
	MaxDelay                  time.Duration
	IntraOpThreads            int
}

// Embedder is the loaded, warmed-up set of models.
type Embedder struct {
	rt  *ortsession.Runtime
	reg *registry.Registry
}

// Open loads and warms up the models on the CPU provider.
func Open(ctx context.Context, o Options) (*Embedder, error) {
	if o.MaxBatch == 0 {
		o.MaxBatch = 32
	}
	if o.MaxDelay == 0 {
		o.MaxDelay = 2 * time.Millisecond
	}
	rt, err := ortsession.NewRuntime(o.ORTLib)
	if err != nil {
		return nil, fmt.Errorf("loading ONNX Runtime: %w", err)
	}
	log := slog.New(slog.DiscardHandler)
	// The service's defaults (ortsession.AutoThreads), so the in-process
	// reference and the service run inferences alike.
	intra, workers := ortsession.AutoThreads(o.IntraOpThreads, runtime.GOMAXPROCS(0))
	base := ortsession.SessionOptions{Provider: "cpu", IntraOpThreads: intra, Log: log}
	reg := registry.New(registry.Config{
		SpecDir: o.SpecDir, Models: o.Models, ModelDir: o.ModelDir, DefaultModel: o.DefaultModel,
		Batching: registry.Batching{MaxBatch: o.MaxBatch, MaxDelay: o.MaxDelay, QueueImages: 1024, Workers: workers},
		NewEncoder: func(l modelspec.Loaded) (registry.Encoder, error) {
			return rt.NewSession(l.ONNX, ortsession.OptionsFor(l, base))
		},
		Meter: noop.NewMeterProvider().Meter("inproc"),
		Log:   log,
	})
	if err := reg.LoadDir(ctx); err != nil {
		_ = rt.Close()
		return nil, fmt.Errorf("loading models: %w", err)
	}
	return &Embedder{rt: rt, reg: reg}, nil
}

// Models lists the loaded models' public specs.
func (e *Embedder) Models() []embedv1.ModelSpec { return e.reg.List() }

// Embed embeds a tensor [N,...] with model ("" for the default) and returns
// the model id and N normalised rows.
func (e *Embedder) Embed(ctx context.Context, t tensorv1.Tensor, model string) (string, [][]float32, error) {
	m, done, err := e.reg.Acquire(model)
	if err != nil {
		return "", nil, err
	}
	defer done()
	rows, err := m.EmbedTensor(ctx, t)
	return m.Spec().ID, rows, err
}

// Close finishes queued work and unloads the runtime.
func (e *Embedder) Close(ctx context.Context) error {
	err := e.reg.Close(ctx)
	if cerr := e.rt.Close(); err == nil {
		err = cerr
	}
	return err
}
