// Package registry holds the loaded models: each one's spec, encoder and
// batcher. It loads the specs of a folder, warms every model up before it
// serves, and reloads (add, replace, remove) without dropping in-flight work:
// a removed model leaves the map first, then finishes what it holds, then closes.
package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/lookalike-dev/lookalike/embed/internal/batcher"
	"github.com/lookalike-dev/lookalike/embed/internal/modelspec"
	"github.com/lookalike-dev/lookalike/shared/bufpool"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"
)

// Encoder runs a model; *ortsession.Session is one.
type Encoder interface {
	batcher.Encoder
	Close() error
}

// Factory makes the encoder for a loaded model.
type Factory func(l modelspec.Loaded) (Encoder, error)

// Errors.
var (
	ErrNotFound  = errors.New("model not found")
	ErrNotLoaded = errors.New("models are not loaded yet")
)

// Batching defaults for models whose spec does not set them.
type Batching struct {
	MaxBatch    int
	MaxDelay    time.Duration
	QueueImages int
	// Workers is the concurrent inferences per model; 0 means CPUWorkers
	// when the model's encoder runs on the CPU and 1 on a GPU.
	Workers    int
	CPUWorkers int
}

// workers resolves Batching.Workers for an encoder on provider.
func (b Batching) workers(provider string) int {
	switch {
	case b.Workers > 0:
		return b.Workers
	case provider == "cpu":
		return max(1, b.CPUWorkers)
	}
	return 1
}

// Config of the registry.
type Config struct {
	// SpecDir holds the model spec files.
	SpecDir string
	// Models lists the ids to load from SpecDir; empty loads every spec.
	Models []string
	// ModelDir is where relative model paths point (MODEL_DIR).
	ModelDir string
	// DefaultModel answers requests that name none; empty is allowed only
	// when a single model is loaded.
	DefaultModel string
	Batching     Batching
	// WarmupFullBatch also runs a MaxBatch warm-up, so the first full batch
	// does not pay for allocation (and TensorRT profiles).
	WarmupFullBatch bool
	NewEncoder      Factory
	Meter           metric.Meter
	Log             *slog.Logger
}

// Model is one loaded, warmed-up model.
type Model struct {
	spec     modelspec.Spec
	mean     []float32
	enc      Encoder
	b        *batcher.Batcher
	inflight sync.WaitGroup
	// wide recycles the float32 inputs widened from uint8 tensors.
	wide bufpool.Pool
}

// Spec is the model's spec.
func (m *Model) Spec() modelspec.Spec { return m.spec }

// Provider is the execution provider the model runs on.
func (m *Model) Provider() string { return m.enc.Provider() }

// Batcher is the model's batcher.
func (m *Model) Batcher() *batcher.Batcher { return m.b }

// Embed embeds n items (their bytes back to back) and returns n normalised rows.
func (m *Model) Embed(ctx context.Context, input []byte, n int) ([][]float32, error) {
	flat, err := m.b.Embed(ctx, input, n)
	if err != nil {
		return nil, err
	}
	dim := m.spec.Dim
	rows := make([][]float32, n)
	for i := range rows {
		rows[i] = flat[i*dim : (i+1)*dim : (i+1)*dim]
		Normalize(rows[i], m.mean)
	}
	return rows, nil
}

// EmbedTensor embeds a tensor [N,...] the model takes (Spec.Takes): its
// input dtype as it is, or uint8 levels, widened first through the
// preprocess spec into the float32 input they stand for.
func (m *Model) EmbedTensor(ctx context.Context, t tensorv1.Tensor) ([][]float32, error) {
	if len(t.Shape) == 0 || !m.spec.Takes(t.DType) {
		return nil, fmt.Errorf("embedding: a %s tensor of shape %v is not an input of model %s", t.DType, t.Shape, m.spec.ID)
	}
	if t.DType == m.spec.InputDType() {
		return m.Embed(ctx, t.Data, t.Shape[0])
	}
	wide := m.wide.Get(4 * len(t.Data))
	if err := m.spec.Preprocess.Widen(wide, t.Data); err != nil {
		m.wide.Put(wide)
		return nil, fmt.Errorf("embedding: %w", err)
	}
	rows, err := m.Embed(ctx, wide, t.Shape[0])
	if err == nil {
		// Every batch that read it has run (after an error, a request
		// that ended while queued may still be read: leave it to the GC).
		m.wide.Put(wide)
	}
	return rows, err
}

// Registry is the set of loaded models.
type Registry struct {
	cfg    Config
	log    *slog.Logger
	syncMu sync.Mutex // one Sync at a time

	mu     sync.RWMutex
	models map[string]*Model
	def    string
	loaded bool
}

// New makes an empty registry; LoadDir or Sync fills it.
func New(cfg Config) *Registry {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registry{cfg: cfg, log: log, models: map[string]*Model{}}
}

// LoadDir reads the spec folder and syncs to it (the configured Models only).
func (r *Registry) LoadDir(ctx context.Context) error {
	specs, err := modelspec.ReadDir(r.cfg.SpecDir)
	if err != nil {
		return err
	}
	if len(r.cfg.Models) > 0 {
		var keep []modelspec.Spec
		for _, id := range r.cfg.Models {
			i := slices.IndexFunc(specs, func(s modelspec.Spec) bool { return s.ID == id })
			if i < 0 {
				return fmt.Errorf("model %q is configured but %s has no spec for it", id, r.cfg.SpecDir)
			}
			keep = append(keep, specs[i])
		}
		specs = keep
	}
	return r.Sync(ctx, specs)
}

// Sync makes the loaded set equal to specs. New and changed models are
// loaded and warmed up before they become visible; if any fails, nothing
// changes. Models no longer wanted are removed, then drained and closed.
func (r *Registry) Sync(ctx context.Context, specs []modelspec.Spec) error {
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	if len(specs) == 0 {
		return errors.New("loading models: no model specs")
	}
	def := r.cfg.DefaultModel
	if def == "" {
		if len(specs) > 1 {
			return fmt.Errorf("loading models: %d models and no default model configured", len(specs))
		}
		def = specs[0].ID
	}
	if !slices.ContainsFunc(specs, func(s modelspec.Spec) bool { return s.ID == def }) {
		return fmt.Errorf("loading models: the default model %q is not among them", def)
	}

	r.mu.RLock()
	current := r.models
	r.mu.RUnlock()
	next := map[string]*Model{}
	var fresh []*Model
	for _, s := range specs {
		if _, dup := next[s.ID]; dup {
			closeAll(ctx, fresh)
			return fmt.Errorf("loading models: model id %q twice", s.ID)
		}
		if old, ok := current[s.ID]; ok && modelspec.Equal(old.spec, s) {
			next[s.ID] = old
			continue
		}
		m, err := r.open(ctx, s)
		if err != nil {
			closeAll(ctx, fresh)
			return err
		}
		fresh = append(fresh, m)
		next[s.ID] = m
	}

	r.mu.Lock()
	r.models, r.def, r.loaded = next, def, true
	r.mu.Unlock()

	var gone []*Model
	for id, old := range current {
		if next[id] != old {
			gone = append(gone, old)
		}
	}
	for _, m := range fresh {
		r.log.InfoContext(ctx, "model loaded", "model_id", m.spec.ID, "model_version", m.spec.Version, "provider", m.Provider(), "dim", m.spec.Dim, "default", m.spec.ID == def)
	}
	for _, m := range gone {
		r.log.InfoContext(ctx, "model unloading", "model_id", m.spec.ID, "model_version", m.spec.Version)
	}
	return closeAll(ctx, gone)
}

// open loads a model, makes its encoder, warms it up and starts its batcher.
func (r *Registry) open(ctx context.Context, s modelspec.Spec) (*Model, error) {
	l, err := modelspec.Load(s, r.cfg.ModelDir)
	if err != nil {
		return nil, err
	}
	if r.cfg.NewEncoder == nil {
		return nil, errors.New("loading models: no encoder factory")
	}
	enc, err := r.cfg.NewEncoder(l)
	if err != nil {
		return nil, fmt.Errorf("loading model %s: %w", s.ID, err)
	}
	cfg := batcher.Config{
		MaxBatch:    pick(s.Batching.MaxBatch, r.cfg.Batching.MaxBatch),
		MaxDelay:    r.cfg.Batching.MaxDelay,
		QueueImages: pick(s.Batching.QueueImages, r.cfg.Batching.QueueImages),
		Workers:     r.cfg.Batching.workers(enc.Provider()),
		ItemBytes:   s.ItemBytes(),
		Dim:         s.Dim,
	}
	if s.Batching.MaxDelayMicros > 0 {
		cfg.MaxDelay = time.Duration(s.Batching.MaxDelayMicros) * time.Microsecond
	}
	sizes := []int{1}
	if mb := pick(cfg.MaxBatch, 32); r.cfg.WarmupFullBatch && mb > 1 {
		sizes = append(sizes, mb)
	}
	for _, n := range sizes {
		if err := ctx.Err(); err != nil {
			_ = enc.Close()
			return nil, fmt.Errorf("warming up model %s: %w", s.ID, err)
		}
		out, dim, err := enc.Run(make([]byte, n*s.ItemBytes()), n)
		if err == nil && (dim != s.Dim || len(out) != n*dim) {
			err = fmt.Errorf("the model gives rows of %d values, the spec says dim %d", dim, s.Dim)
		}
		if err != nil {
			_ = enc.Close()
			return nil, fmt.Errorf("warming up model %s: %w", s.ID, err)
		}
	}
	b, err := batcher.New(enc, cfg, r.cfg.Meter,
		attribute.String("model_id", s.ID), attribute.String("model_version", s.Version), attribute.String("provider", enc.Provider()))
	if err != nil {
		_ = enc.Close()
		return nil, fmt.Errorf("loading model %s: %w", s.ID, err)
	}
	return &Model{spec: s, mean: l.Mean, enc: enc, b: b}, nil
}

func pick(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// closeAll waits for each model's in-flight requests, drains its queue and
// closes its encoder.
func closeAll(ctx context.Context, ms []*Model) error {
	var errs []error
	for _, m := range ms {
		done := make(chan struct{})
		go func() { m.inflight.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("unloading %s: %w", m.spec.ID, ctx.Err()))
			continue
		}
		if err := m.b.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("unloading %s: %w", m.spec.ID, err))
			continue
		}
		if err := m.enc.Close(); err != nil {
			errs = append(errs, fmt.Errorf("unloading %s: %w", m.spec.ID, err))
		}
	}
	return errors.Join(errs...)
}

// Acquire returns the model with id ("" for the default) and a release
// function the caller must call when its request is done; until then an
// unload waits for it.
func (r *Registry) Acquire(id string) (*Model, func(), error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if !r.loaded {
		return nil, nil, ErrNotLoaded
	}
	if id == "" {
		id = r.def
	}
	m, ok := r.models[id]
	if !ok {
		return nil, nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	m.inflight.Add(1)
	return m, m.inflight.Done, nil
}

// Default is the default model's id.
func (r *Registry) Default() string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.def
}

// Ready reports whether models are loaded (each one is warmed up before it is).
func (r *Registry) Ready() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.loaded && len(r.models) > 0
}

// Public is a model's published spec.
func (r *Registry) Public(m *Model) embedv1.ModelSpec {
	s := m.spec
	return embedv1.ModelSpec{
		ID: s.ID, Version: s.Version, Dim: s.Dim, Normalization: s.Normalization,
		Preprocess: s.Preprocess, Default: s.ID == r.Default(), Provider: m.Provider(), Ready: true,
		MaxBatch: m.b.Config().MaxBatch, WireDTypes: s.WireDTypes(),
	}
}

// List returns the published specs, sorted by id.
func (r *Registry) List() []embedv1.ModelSpec {
	r.mu.RLock()
	ms := make([]*Model, 0, len(r.models))
	for _, m := range r.models {
		ms = append(ms, m)
	}
	r.mu.RUnlock()
	out := make([]embedv1.ModelSpec, 0, len(ms))
	for _, m := range ms {
		out = append(out, r.Public(m))
	}
	slices.SortFunc(out, func(a, b embedv1.ModelSpec) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// Close unloads every model, finishing in-flight work first.
func (r *Registry) Close(ctx context.Context) error {
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	r.mu.Lock()
	ms := make([]*Model, 0, len(r.models))
	for _, m := range r.models {
		ms = append(ms, m)
	}
	r.models, r.loaded = map[string]*Model{}, false
	r.mu.Unlock()
	return closeAll(ctx, ms)
}
