package canary

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lookalike-dev/lookalike/gateway/internal/pipeline"
	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
)

// Backend runs queries and writes for the models its embedder serves. The
// gateway has one per embed deployment: the stable embed (which may serve
// both models in one process) and, when CANARY_EMBED_URLS is set, the
// canary's own embed deployment.
type Backend = pipeline.Backend

// Config is the rollout configuration of one gateway replica.
type Config struct {
	// Catalog is the catalog alias ("products").
	Catalog string
	// Share of query traffic sent to a live canary (CANARY_SHARE, 0..1).
	Share float64
	// Model is the canary model a start without a model rolls out (CANARY_MODEL).
	Model string
	// ShadowRate is the share of stable queries also run on a live canary,
	// off the response path, to compare the two spaces (0..1).
	ShadowRate float64
	// ShadowConcurrency bounds shadow queries in flight (more are dropped).
	ShadowConcurrency int
	// ShadowTimeout bounds one shadow query.
	ShadowTimeout time.Duration
	// StateTTL is how long the alias state is cached for queries (writes
	// and admin calls always read it fresh).
	StateTTL time.Duration
	// ClientIP finds a request's client IP for the split (nil: the
	// connection's peer).
	ClientIP echo.IPExtractor
}

// Router sends each query to its arm's embedder and space, dual-writes
// products while a canary exists, shadows a sample of stable traffic on
// the canary, and changes the rollout (start, serve, promote, rollback).
type Router struct {
	cfg      Config
	backends []Backend
	spaces   Spaces
	metrics  *Metrics
	log      *slog.Logger

	mu         sync.Mutex
	state      State
	loaded     bool      // state holds a successful read
	readStart  time.Time // when the read behind state started
	fetched    time.Time // when the last read (even a failed one) ended
	lastErr    error     // of the last read
	refreshing bool

	shadowSlots chan struct{}
	shadows     sync.WaitGroup
	rnd         func() float64
}

// New builds a router. backends[0] is the stable embed deployment.
func New(cfg Config, backends []Backend, spaces Spaces, m *Metrics, log *slog.Logger) (*Router, error) {
	if len(backends) == 0 {
		return nil, errors.New("canary: no backend")
	}
	if cfg.Catalog == "" {
		cfg.Catalog = "products"
	}
	if cfg.Share < 0 || cfg.Share > 1 || cfg.ShadowRate < 0 || cfg.ShadowRate > 1 {
		return nil, fmt.Errorf("canary: share %v and shadow rate %v must be within 0..1", cfg.Share, cfg.ShadowRate)
	}
	if cfg.ShadowConcurrency <= 0 {
		cfg.ShadowConcurrency = 4
	}
	if cfg.ShadowTimeout <= 0 {
		cfg.ShadowTimeout = 10 * time.Second
	}
	if cfg.StateTTL <= 0 {
		cfg.StateTTL = 2 * time.Second
	}
	if m == nil {
		var err error
		if m, err = NewMetrics(nil); err != nil {
			return nil, err
		}
	}
	if log == nil {
		log = slog.Default()
	}
	return &Router{cfg: cfg, backends: backends, spaces: spaces, metrics: m, log: log,
		shadowSlots: make(chan struct{}, cfg.ShadowConcurrency), rnd: rand.Float64}, nil
}

// Config returns the router's configuration.
func (r *Router) Config() Config { return r.cfg }

// State returns the rollout state. With fresh it reads search's aliases
// now. Otherwise it answers from the cache: within StateTTL as is; after
// that the stale state is served while one background read refreshes it,
// so a query never waits on the aliases once they have been read. A failed
// read is remembered for StateTTL too (no retry storm against a sick
// search); until a first read succeeds the state is "no canary".
func (r *Router) State(ctx context.Context, fresh bool) (State, error) {
	r.mu.Lock()
	switch {
	case fresh:
	case !r.fetched.IsZero() && time.Since(r.fetched) < r.cfg.StateTTL:
		st, err := r.state, r.lastErr
		r.mu.Unlock()
		return st, err
	case r.loaded:
		st := r.state
		if !r.refreshing {
			r.refreshing = true
			go func() {
				ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				defer cancel()
				_, _ = r.load(ctx)
				r.mu.Lock()
				r.refreshing = false
				r.mu.Unlock()
			}()
		}
		r.mu.Unlock()
		return st, nil
	}
	r.mu.Unlock()
	return r.load(ctx)
}

// load reads the aliases and caches the state. A read that started before
// the cached one (a slow background refresh overtaken by a transition)
// does not overwrite it.
func (r *Router) load(ctx context.Context) (State, error) {
	started := time.Now()
	aliases, err := r.spaces.Aliases(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fetched = time.Now()
	if err != nil {
		r.lastErr = err
		if r.loaded {
			return r.state, err
		}
		return State{Catalog: r.cfg.Catalog, Phase: PhaseNone}, err
	}
	st := StateFromAliases(r.cfg.Catalog, aliases)
	if started.Before(r.readStart) {
		return st, nil
	}
	if r.loaded && (st.Phase != r.state.Phase || st.Stable != r.state.Stable || st.Canary != r.state.Canary) {
		r.log.InfoContext(ctx, "canary state changed", "phase", st.Phase, "stable", st.Stable, "canary", st.Canary)
	}
	r.state, r.readStart, r.loaded, r.lastErr = st, started, true, nil
	return st, nil
}

// backendFor finds the backend whose embedder serves model ("" = the
// stable deployment's default).
func (r *Router) backendFor(ctx context.Context, model string) (Backend, error) {
	if model == "" {
		return r.backends[0], nil
	}
	var firstErr error
	for _, b := range r.backends {
		list, err := b.Models(ctx)
		if err != nil {
			firstErr = cmpErr(firstErr, err)
			continue
		}
		for _, m := range list {
			if m.ID == model {
				return b, nil
			}
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return nil, apierror.New(http.StatusServiceUnavailable, CodeModelNotServed, "no embed deployment serves model %q", model).WithRetryAfter(5)
}

// spec returns the spec of model from whichever embedder serves it.
func (r *Router) spec(ctx context.Context, model string) (embedv1.ModelSpec, error) {
	for _, b := range r.backends {
		list, err := b.Models(ctx)
		if err != nil {
			continue
		}
		for _, m := range list {
			if m.ID == model {
				return m, nil
			}
		}
	}
	return embedv1.ModelSpec{}, apierror.BadRequest(CodeModelNotServed, "no embed deployment serves model %q: deploy it (embed's model list or CANARY_EMBED_URLS) first", model)
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// Query is a search request as the router sees it.
type Query struct {
	// Image is the query image (empty for SKU queries).
	Image []byte
	// SKU asks for "more like this".
	SKU string
	pipeline.Query
}

// Search answers q on the arm the split (or an override) picks for req,
// records the arm's metrics and, for a sampled stable query while a canary
// is live, runs the same query on the canary in the background.
func (r *Router) Search(ctx context.Context, req *http.Request, q Query) (pipeline.Result, Decision, error) {
	st, d, err := r.decide(ctx, req, q.Model)
	if err != nil {
		return pipeline.Result{}, d, err
	}
	res, err := r.answer(ctx, st, d, q)
	return res, d, err
}

// decide picks the arm of a query from the cached rollout state. When the
// aliases cannot be read the state is "no canary": the query then fails or
// not on its own, exactly as without a rollout.
func (r *Router) decide(ctx context.Context, req *http.Request, requested string) (State, Decision, error) {
	st, _ := r.State(ctx, false)
	d, err := Decide(st, r.cfg.Share, ClientKey(req, r.cfg.ClientIP), req.Header.Get(HeaderOverride), requested)
	if apierror.CodeOf(err) == CodeModelNotLive {
		if _, serr := r.spec(ctx, requested); serr != nil { // no embedder knows it at all
			return st, d, apierror.BadRequest(pipeline.CodeUnknownModel, "model %q is not served", requested)
		}
	}
	return st, d, err
}

// answer runs q on d's arm: its model's embedder and space.
func (r *Router) answer(ctx context.Context, st State, d Decision, q Query) (pipeline.Result, error) {
	b, err := r.backendFor(ctx, d.Model)
	if err != nil {
		r.metrics.Query(ctx, d.Model, d.Arm, 0, outcomeOf(err), -1)
		return pipeline.Result{}, err
	}
	q.Model = d.Model
	start := time.Now()
	res, err := run(ctx, b, q)
	model := d.Model
	if res.Model != "" {
		model = res.Model
	}
	r.metrics.Query(ctx, model, d.Arm, time.Since(start), outcomeOf(err), topScore(res))
	if err == nil && d.Arm == Stable && st.Phase == PhaseLive && d.Reason == "split" && r.rnd() < r.cfg.ShadowRate {
		r.shadow(ctx, st, q, res)
	}
	return res, err
}

func run(ctx context.Context, b Backend, q Query) (pipeline.Result, error) {
	if q.SKU != "" {
		return b.MoreLikeThis(ctx, q.SKU, q.Query)
	}
	return b.SearchImage(ctx, q.Image, q.Query)
}

func outcomeOf(err error) string {
	if err == nil {
		return OutcomeOK
	}
	if e, ok := apierror.As(err); ok && e.Status < 500 {
		return OutcomeClientError
	}
	return OutcomeError
}

func topScore(res pipeline.Result) float64 {
	if len(res.Hits) == 0 {
		return -1
	}
	return float64(res.Hits[0].Score)
}

// SKUs lists the SKUs of hits in order.
func SKUs(hits []searchv1.Hit) []string {
	out := make([]string, len(hits))
	for i, h := range hits {
		out[i] = h.SKU
	}
	return out
}

// shadow runs q on the canary off the response path and records overlap@10
// with the stable answer. It never delays or fails the stable answer: when
// ShadowConcurrency shadows are already running, it is dropped.
func (r *Router) shadow(ctx context.Context, st State, q Query, stable pipeline.Result) {
	select {
	case r.shadowSlots <- struct{}{}:
	default:
		r.metrics.ShadowDropped(ctx)
		return
	}
	r.shadows.Add(1)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.ShadowTimeout)
	// The shadow reads the image after the request that owns it is done.
	if h := q.ImageHold; h != nil {
		h.Retain()
	}
	go func() {
		defer func() {
			if h := q.ImageHold; h != nil {
				h.Release()
			}
			cancel()
			<-r.shadowSlots
			r.shadows.Done()
		}()
		q.Model = st.Canary
		start := time.Now()
		b, err := r.backendFor(sctx, st.Canary)
		var res pipeline.Result
		if err == nil {
			res, err = run(sctx, b, q)
		}
		r.metrics.Query(sctx, st.Canary, Canary, time.Since(start), outcomeOf(err), topScore(res))
		if err != nil {
			r.log.WarnContext(sctx, "canary shadow query failed", "canary", st.Canary, "err", err)
			r.metrics.Shadow(sctx, st.Stable, st.Canary, -1)
			return
		}
		r.metrics.Shadow(sctx, st.Stable, st.Canary, OverlapAtK(SKUs(stable.Hits), SKUs(res.Hits), 10))
	}()
}

// WaitShadows waits for the shadow queries in flight (tests, shutdown).
func (r *Router) WaitShadows() { r.shadows.Wait() }

// Close waits for shadow queries, up to ctx.
func (r *Router) Close(ctx context.Context) error {
	done := make(chan struct{})
	go func() { r.shadows.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Written is a product write and the spaces it reached.
type Written struct {
	pipeline.Written
	// Also lists the other spaces written (the canary's, during a rollout).
	Also []pipeline.Written `json:"also,omitempty"`
}

// target is one space a write goes to.
type target struct {
	arm   Arm
	model string
}

// targets are the spaces a product write goes to: the one named, or the
// stable space plus, while a canary exists, the canary's (dual write).
// The state is read fresh, so no write slips past a canary just started.
func (r *Router) targets(ctx context.Context, model string) ([]target, error) {
	if model != "" {
		return []target{{Stable, model}}, nil
	}
	st, err := r.State(ctx, true)
	if err != nil {
		return nil, apierror.Wrap(err, http.StatusServiceUnavailable, apierror.CodeUnavailable, "search's aliases could not be read").WithRetryAfter(1)
	}
	ts := []target{{Stable, st.Stable}}
	if st.Active() {
		ts = append(ts, target{Canary, st.Canary})
	}
	return ts, nil
}

// write runs fn on every target at once. The stable write's error wins;
// a failed canary write fails the request too (503, retry: the upsert is
// idempotent), because a product missing from the canary's space would
// silently be missing after a promote.
func (r *Router) write(ctx context.Context, model, what string, fn func(ctx context.Context, b Backend, model string) (pipeline.Written, error)) (Written, error) {
	ts, err := r.targets(ctx, model)
	if err != nil {
		return Written{}, err
	}
	res := make([]pipeline.Written, len(ts))
	errs := make([]error, len(ts))
	var wg sync.WaitGroup
	for i, t := range ts {
		wg.Go(func() {
			b, err := r.backendFor(ctx, t.model)
			if err == nil {
				res[i], err = fn(ctx, b, t.model)
			}
			errs[i] = err
			if len(ts) > 1 {
				r.metrics.Write(ctx, firstNonEmpty(res[i].Model, t.model), t.arm, err)
			}
		})
	}
	wg.Wait()
	if errs[0] != nil {
		return Written{}, errs[0]
	}
	out := Written{Written: res[0]}
	for i := 1; i < len(ts); i++ {
		if errs[i] != nil {
			r.log.ErrorContext(ctx, "canary dual write failed", "what", what, "model", ts[i].model, "err", errs[i])
			return Written{}, apierror.Wrap(errs[i], http.StatusServiceUnavailable, apierror.CodeUnavailable,
				"written to the stable space, but not to canary %q's: retry", ts[i].model).WithRetryAfter(1)
		}
		out.Also = append(out.Also, res[i])
	}
	return out, nil
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// IndexProductAll embeds and upserts a product into every live space and
// says which spaces it reached.
func (r *Router) IndexProductAll(ctx context.Context, sku string, image []byte, payload searchv1.Payload, model string) (Written, error) {
	return r.write(ctx, model, "index", func(ctx context.Context, b Backend, m string) (pipeline.Written, error) {
		return b.IndexProduct(ctx, sku, image, payload, m)
	})
}

// IndexProduct embeds and upserts a product into every live space (the
// gateway's product API calls it; see IndexProductAll).
func (r *Router) IndexProduct(ctx context.Context, sku string, image []byte, payload searchv1.Payload, model string) (pipeline.Written, error) {
	w, err := r.IndexProductAll(ctx, sku, image, payload, model)
	return w.Written, err
}

// UpdateMetadata replaces a product's payload in every live space. A
// product the backfill has not reached yet is not in the canary's space:
// that is not an error (the backfill writes it).
func (r *Router) UpdateMetadata(ctx context.Context, sku string, payload searchv1.Payload, model string) (pipeline.Written, error) {
	w, err := r.write(ctx, model, "update", func(ctx context.Context, b Backend, m string) (pipeline.Written, error) {
		w, err := b.UpdateMetadata(ctx, sku, payload, m)
		if err != nil && model == "" && m != "" && apierror.CodeOf(err) == apierror.CodeNotFound {
			if st, _ := r.State(ctx, false); st.Canary == m {
				r.log.WarnContext(ctx, "metadata update: product not yet in the canary's space", "sku", sku, "model", m)
				return pipeline.Written{SKU: sku, Model: m, Collection: searchv1.CollectionName(r.cfg.Catalog, m)}, nil
			}
		}
		return w, err
	})
	return w.Written, err
}

// Delete removes a product from every live space.
func (r *Router) Delete(ctx context.Context, sku, model string) error {
	_, err := r.write(ctx, model, "delete", func(ctx context.Context, b Backend, m string) (pipeline.Written, error) {
		return pipeline.Written{SKU: sku, Model: m}, b.Delete(ctx, sku, m)
	})
	return err
}
