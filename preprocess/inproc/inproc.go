// Package inproc exposes the preprocess stage as a library, for in-process
// use by the end-to-end benchmark's no-HTTP reference pipeline. Services never
// import it: they call the preprocess service through its contract.
package inproc

import (
	"context"
	"fmt"

	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"

	"github.com/lookalike-dev/lookalike/preprocess/internal/imagedecode"
	"github.com/lookalike-dev/lookalike/preprocess/internal/preprocessor"
)

// Processor is the service's processor with its default limits.
type Processor struct{ p *preprocessor.Processor }

// New builds a processor with the service defaults (20 MiB, 50 MP, one
// image per core at once).
func New() (*Processor, error) {
	p, err := preprocessor.New(preprocessor.Options{Limits: imagedecode.Limits{MaxBytes: 20 << 20, MaxPixels: 50_000_000}, KeepFreedMemory: preprocessor.DefaultKeepFreedMemory}, nil)
	if err != nil {
		return nil, fmt.Errorf("building preprocessor: %w", err)
	}
	return &Processor{p: p}, nil
}

// Process turns image bytes into a tensor [1,...] as spec says.
func (p *Processor) Process(ctx context.Context, data []byte, spec preprocessv1.Spec) (tensorv1.Tensor, error) {
	return p.process(ctx, data, spec, preprocessor.Call{})
}

// ProcessQuery is Process as the gateway asks for a query: without the
// perceptual hash, which a query never reads.
func (p *Processor) ProcessQuery(ctx context.Context, data []byte, spec preprocessv1.Spec) (tensorv1.Tensor, error) {
	return p.process(ctx, data, spec, preprocessor.Call{NoHash: true})
}

func (p *Processor) process(ctx context.Context, data []byte, spec preprocessv1.Spec, c preprocessor.Call) (tensorv1.Tensor, error) {
	r, err := p.p.ProcessCall(ctx, data, spec, c)
	if err != nil {
		return tensorv1.Tensor{}, err
	}
	return tensorv1.Tensor{DType: preprocessor.DType(spec), Shape: spec.Shape(1), Data: r.Data}, nil
}

// Recycle hands back a tensor's data once nothing refers to it any more,
// as the service does once its answer is written.
func (p *Processor) Recycle(t tensorv1.Tensor) { p.p.Recycle(t.Data) }
