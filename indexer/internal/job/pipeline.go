package job

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/catalog"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"
)

// Failure codes the runner itself gives (others come from the services).
const (
	CodeImageNotFound   = "image_not_found"
	CodeImagePath       = "image_path_not_allowed"
	CodeImageTooLarge   = "image_too_large"
	CodeImageRead       = "image_read_failed"
	CodeFetchDisabled   = "url_fetch_disabled"
	CodeDuplicateImage  = "duplicate_image"
	CodeNearDuplicate   = "near_duplicate"
	CodeServiceResponse = "bad_service_response"
)

// item is one catalog product on its way through the lanes.
type item struct {
	line    int
	p       catalog.Product
	img     []byte
	pending atomic.Int32 // lanes still working on it

	mu      sync.Mutex
	failure *Entry // first lane failure
	skipped *Entry
	phash   string
	dupOf   string
	dupKind string
	dupScr  float32
}

// row is one item's tensor row or vector in one lane.
type row struct {
	it    *item
	data  []byte
	dtype tensorv1.DType
	vec   []float32
}

// lane is the preprocess -> embed -> upsert chain of one target.
type lane struct {
	idx int
	t   Target
	// model is the model's own preprocess spec; wire is the one asked of
	// preprocess (uint8 levels when embed takes them, Model.WireSpec) until
	// a preprocess refuses its dtype.
	model   preprocessv1.Spec
	wireMu  sync.Mutex
	wire    preprocessv1.Spec
	dim     int
	prepQ   chan *item
	embedQ  chan *row
	upsertQ chan *row

	shapeMu  sync.Mutex
	rowShape []int
}

func (l *lane) wireSpec() preprocessv1.Spec {
	l.wireMu.Lock()
	defer l.wireMu.Unlock()
	return l.wire
}

// useModelSpec falls back to the model's own spec after a preprocess
// refused the wire dtype (one older than it).
func (l *lane) useModelSpec() {
	l.wireMu.Lock()
	defer l.wireMu.Unlock()
	l.wire = l.model
}

// pipeline runs the stages; it returns a fatal error (a service down past
// the retries, a contract violation), nil otherwise.
func (j *Job) pipeline(ctx context.Context, ps prescan, cp *Checkpoint) error {
	lanes, err := j.setup(ctx)
	if err != nil {
		return err
	}
	ctx, cancelFatal := context.WithCancelCause(ctx)
	defer cancelFatal(nil)
	var fatalOnce sync.Once
	var fatalErr error
	fatal := func(err error) {
		fatalOnce.Do(func() { fatalErr = err; cancelFatal(err) })
	}

	stopCP := make(chan struct{})
	cpDone := make(chan struct{})
	go func() { // periodic checkpoints
		defer close(cpDone)
		tick := time.NewTicker(j.cfg.CheckpointEvery)
		defer tick.Stop()
		for {
			select {
			case <-stopCP:
				return
			case <-tick.C:
				if _, err := j.tr.checkpoint(StateRunning, ""); err != nil {
					fatal(fmt.Errorf("writing checkpoint: %w", err))
				}
			}
		}
	}()
	defer func() { close(stopCP); <-cpDone }()

	fetchQ := make(chan *item, 2*j.cfg.FetchWorkers)
	var wg sync.WaitGroup
	// Lanes, from the end backwards.
	for _, l := range lanes {
		var upWG, embWG, prepWG sync.WaitGroup
		for range j.cfg.UpsertConcurrency {
			upWG.Go(func() { j.upsertStage(ctx, l, fatal) })
		}
		for range j.cfg.EmbedConcurrency {
			embWG.Go(func() { j.embedStage(ctx, l, fatal) })
		}
		for range j.cfg.PreprocessWorkers {
			prepWG.Go(func() { j.preprocessStage(ctx, l, fatal) })
		}
		wg.Go(func() {
			prepWG.Wait()
			close(l.embedQ)
			embWG.Wait()
			close(l.upsertQ)
			upWG.Wait()
		})
	}
	var fetchWG sync.WaitGroup
	lim := newHostLimiter(j.cfg.HostRate, j.cfg.HostBurst)
	loader, err := j.newLoader(lim)
	if err != nil {
		return err
	}
	defer loader.close()
	for range j.cfg.FetchWorkers {
		fetchWG.Go(func() { j.fetchStage(ctx, fetchQ, lanes, loader) })
	}
	wg.Go(func() {
		fetchWG.Wait()
		for _, l := range lanes {
			close(l.prepQ)
		}
	})

	dispErr := j.dispatch(ctx, ps, cp, fetchQ)
	close(fetchQ)
	wg.Wait()
	if dispErr != nil && ctx.Err() == nil {
		return dispErr
	}
	return fatalErr
}

// setup asks embed for each target's model spec and creates the
// collections (idempotent) before anything is fetched.
func (j *Job) setup(ctx context.Context) ([]*lane, error) {
	lanes := make([]*lane, len(j.cfg.Targets))
	for i, t := range j.cfg.Targets {
		var spec struct {
			id         string
			dim        int
			prep, wire preprocessv1.Spec
		}
		err := j.retry(ctx, func(ctx context.Context) error {
			m, err := t.Embed.Model(ctx, t.Model)
			spec.id, spec.dim, spec.prep, spec.wire = m.ID, m.Dim, m.Preprocess, m.WireSpec()
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("getting model %s from embed: %w", t.Model, err)
		}
		if spec.id != t.Model || spec.dim < 1 {
			return nil, fmt.Errorf("embed describes model %q (dim %d) when asked for %q", spec.id, spec.dim, t.Model)
		}
		if err := spec.prep.Validate(); err != nil {
			return nil, fmt.Errorf("model %s: %w", t.Model, err)
		}
		err = j.retry(ctx, func(ctx context.Context) error {
			_, err := t.Search.CreateCollection(ctx, searchv1.CreateCollectionRequest{Catalog: t.Catalog, Model: t.Model, Dim: spec.dim, MakeAlias: t.MakeAlias})
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("creating collection %s: %w", searchv1.CollectionName(t.Catalog, t.Model), err)
		}
		lanes[i] = &lane{
			idx: i, t: t, model: spec.prep, wire: spec.wire, dim: spec.dim,
			prepQ:   make(chan *item, 2*j.cfg.PreprocessBatch*j.cfg.PreprocessWorkers),
			embedQ:  make(chan *row, 2*j.cfg.EmbedBatch*j.cfg.EmbedConcurrency),
			upsertQ: make(chan *row, 2*j.cfg.UpsertBatch),
		}
	}
	return lanes, nil
}

// dispatch reads the catalog and hands each line that still needs work to
// the fetchers; superseded and unparsable lines are finished at once.
func (j *Job) dispatch(ctx context.Context, ps prescan, cp *Checkpoint, fetchQ chan<- *item) error {
	replay := map[int]bool{}
	next := 0
	if cp != nil {
		next = cp.NextLine
		for _, l := range cp.InFlight {
			replay[l] = true
		}
	}
	f, err := j.openCatalog()
	if err != nil {
		return fmt.Errorf("opening catalog: %w", err)
	}
	defer f.Close()
	r := catalog.NewReader(f, j.format())
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rec, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading catalog: %w", err)
		}
		if rec.Line < next && !replay[rec.Line] {
			continue // finished in an earlier run
		}
		sku := recordSKU(rec)
		if sku != "" && ps.lastLine[sku] != rec.Line {
			if err := j.tr.finish(Entry{Line: rec.Line, SKU: sku, Status: StatusSuperseded, Reason: fmt.Sprintf("line %d has the same SKU and wins", ps.lastLine[sku])}); err != nil {
				return err
			}
			continue
		}
		if rec.Err != nil {
			if err := j.tr.finish(Entry{Line: rec.Line, SKU: sku, Status: StatusFailed, Stage: "parse", Code: rec.Err.Code, Reason: rec.Err.Message}); err != nil {
				return err
			}
			continue
		}
		j.tr.dispatch(rec.Line)
		select {
		case fetchQ <- &item{line: rec.Line, p: rec.Product}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// laneDone records one lane's outcome for it; the last lane finishes the item.
func (j *Job) laneDone(it *item, failure, skipped *Entry) {
	it.mu.Lock()
	if failure != nil && it.failure == nil {
		it.failure = failure
	}
	if skipped != nil && it.skipped == nil {
		it.skipped = skipped
	}
	it.mu.Unlock()
	if it.pending.Add(-1) != 0 {
		return
	}
	it.mu.Lock()
	e := Entry{Line: it.line, SKU: it.p.SKU, Status: StatusDone, PHash: it.phash, DuplicateOf: it.dupOf, DuplicateKind: it.dupKind, DuplicateScore: it.dupScr}
	switch {
	case it.failure != nil:
		e.Status, e.Stage, e.Code, e.Reason = StatusFailed, it.failure.Stage, it.failure.Code, it.failure.Reason
		e.PHash = ""
	case it.skipped != nil:
		e.Status, e.Code, e.Reason = StatusSkipped, it.skipped.Code, it.skipped.Reason
		e.PHash = ""
	}
	it.mu.Unlock()
	it.img = nil
	if err := j.tr.finish(e); err != nil {
		j.Cancel()
	}
}

func failEntry(stage string, err error) *Entry {
	code := apierror.CodeOf(err)
	if code == "" {
		code = "error"
	}
	msg := err.Error()
	if ae, ok := apierror.As(err); ok {
		msg = ae.Message
	}
	return &Entry{Stage: stage, Code: code, Reason: msg}
}
