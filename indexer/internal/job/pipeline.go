package job

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

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

// ---- fetch ----

type loader struct {
	root    *os.Root
	base    *url.URL
	lim     *hostLimiter
	fetcher ImageFetcher
	max     int64
}

func (j *Job) newLoader(lim *hostLimiter) (*loader, error) {
	ld := &loader{lim: lim, fetcher: j.cfg.Fetcher, max: j.cfg.MaxImageBytes}
	if j.cfg.CatalogURL != "" {
		u, err := url.Parse(j.cfg.CatalogURL)
		if err != nil {
			return nil, fmt.Errorf("parsing catalog URL: %w", err)
		}
		ld.base = u
		return ld, nil
	}
	if j.cfg.NoLocalImages {
		return ld, nil
	}
	dir := j.catalogDir()
	if j.cfg.ImageRoot != "" {
		dir = j.cfg.ImageRoot
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("opening catalog folder: %w", err)
	}
	ld.root = root
	return ld, nil
}

func (ld *loader) close() {
	if ld.root != nil {
		ld.root.Close()
	}
}

func (ld *loader) load(ctx context.Context, p catalog.Product) ([]byte, *Entry) {
	ref := p.Image
	if !p.IsURL() && ld.base != nil {
		u, err := ld.base.Parse(ref)
		if err != nil {
			return nil, &Entry{Stage: "fetch", Code: CodeImagePath, Reason: fmt.Sprintf("image %q does not resolve against the catalog URL", ref)}
		}
		ref = u.String()
	}
	if strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://") || strings.HasPrefix(strings.ToLower(ref), "http") {
		if ld.fetcher == nil {
			return nil, &Entry{Stage: "fetch", Code: CodeFetchDisabled, Reason: "this job fetches no URLs"}
		}
		u, err := url.Parse(ref)
		if err != nil {
			return nil, &Entry{Stage: "fetch", Code: "url_not_allowed", Reason: "image URL does not parse"}
		}
		if err := ld.lim.wait(ctx, strings.ToLower(u.Host)); err != nil {
			return nil, nil // canceled
		}
		res, err := ld.fetcher.Fetch(ctx, ref)
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil
			}
			return nil, failEntry("fetch", err)
		}
		return res.Body, nil
	}
	if ld.root == nil {
		return nil, &Entry{Stage: "fetch", Code: CodeImagePath, Reason: "local image paths are off for this job (use URLs)"}
	}
	f, err := ld.root.Open(filepath.FromSlash(ref))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, &Entry{Stage: "fetch", Code: CodeImageNotFound, Reason: fmt.Sprintf("no image file %q", ref)}
	case err != nil && (filepath.IsAbs(ref) || strings.Contains(err.Error(), "escapes")):
		return nil, &Entry{Stage: "fetch", Code: CodeImagePath, Reason: fmt.Sprintf("image path %q leaves the catalog folder", ref)}
	case err != nil:
		return nil, &Entry{Stage: "fetch", Code: CodeImageRead, Reason: err.Error()}
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && !st.Mode().IsRegular() {
		return nil, &Entry{Stage: "fetch", Code: CodeImageRead, Reason: fmt.Sprintf("%q is not a regular file", ref)}
	}
	b, err := io.ReadAll(io.LimitReader(f, ld.max+1))
	if err != nil {
		return nil, &Entry{Stage: "fetch", Code: CodeImageRead, Reason: err.Error()}
	}
	if int64(len(b)) > ld.max {
		return nil, &Entry{Stage: "fetch", Code: CodeImageTooLarge, Reason: fmt.Sprintf("image is over %d bytes", ld.max)}
	}
	return b, nil
}

func (j *Job) fetchStage(ctx context.Context, in <-chan *item, lanes []*lane, ld *loader) {
	for it := range in {
		if ctx.Err() != nil {
			continue // drain; the items stay in flight for the next run
		}
		t0 := time.Now()
		img, fail := ld.load(ctx, it.p)
		if ctx.Err() != nil {
			continue
		}
		j.cfg.Observer.Stage("fetch", 1, time.Since(t0))
		if fail != nil {
			it.pending.Store(1)
			j.laneDone(it, fail, nil)
			continue
		}
		it.img = img
		it.pending.Store(int32(len(lanes)))
		for _, l := range lanes {
			select {
			case l.prepQ <- it:
			case <-ctx.Done():
			}
		}
	}
}

// hostLimiter is a token bucket per origin host.
type hostLimiter struct {
	mu    sync.Mutex
	r     rate.Limit
	burst int
	m     map[string]*rate.Limiter
}

func newHostLimiter(perSec float64, burst int) *hostLimiter {
	return &hostLimiter{r: rate.Limit(perSec), burst: burst, m: map[string]*rate.Limiter{}}
}

func (h *hostLimiter) wait(ctx context.Context, host string) error {
	h.mu.Lock()
	l, ok := h.m[host]
	if !ok {
		l = rate.NewLimiter(h.r, h.burst)
		h.m[host] = l
	}
	h.mu.Unlock()
	return l.Wait(ctx)
}

// ---- batching ----

// gather blocks for one element, then takes up to max-1 more, waiting at
// most linger for them. ok is false when q is closed and empty.
func gather[T any](ctx context.Context, q <-chan T, max int, linger time.Duration) (batch []T, ok bool) {
	select {
	case v, open := <-q:
		if !open {
			return nil, false
		}
		batch = append(batch, v)
	case <-ctx.Done():
		return nil, false
	}
	timer := time.NewTimer(linger)
	defer timer.Stop()
	for len(batch) < max {
		select {
		case v, open := <-q:
			if !open {
				return batch, true
			}
			batch = append(batch, v)
		case <-timer.C:
			return batch, true
		case <-ctx.Done():
			return batch, true
		}
	}
	return batch, true
}

// retry calls fn until it succeeds, fails for good (a 4xx), or the retries
// are spent, backing off exponentially.
func (j *Job) retry(ctx context.Context, fn func(context.Context) error) error {
	wait := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := fn(ctx)
		if err == nil || !transient(err) || attempt >= j.cfg.Retries || ctx.Err() != nil {
			return err
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
		wait = min(2*wait, 2*time.Second)
	}
}

func transient(err error) bool {
	if ae, ok := apierror.As(err); ok {
		return ae.Status >= 500 || ae.Status == http.StatusTooManyRequests || ae.Status == http.StatusRequestTimeout
	}
	return !errors.Is(err, context.Canceled)
}

// ---- preprocess ----

func (j *Job) preprocessStage(ctx context.Context, l *lane, fatal func(error)) {
	for {
		batch, ok := gather(ctx, l.prepQ, j.cfg.PreprocessBatch, j.cfg.Linger)
		if !ok {
			return
		}
		if ctx.Err() != nil {
			continue
		}
		j.preprocess(ctx, l, batch, fatal, 0)
	}
}

// preprocess sends one batch. Items the service refuses for good (4xx)
// fail; items it could not do for now (5xx, 429 per item) are sent again,
// attempt counting the tries.
func (j *Job) preprocess(ctx context.Context, l *lane, batch []*item, fatal func(error), attempt int) {
	imgs := make([][]byte, len(batch))
	for i, it := range batch {
		imgs[i] = it.img
	}
	t0 := time.Now()
	var meta preprocessv1.BatchMeta
	var t *tensorv1.Tensor
	spec := l.wireSpec()
	err := j.retry(ctx, func(ctx context.Context) error {
		var err error
		meta, t, err = l.t.Preprocess.PreprocessBatch(ctx, imgs, &spec)
		return err
	})
	if ctx.Err() != nil {
		return
	}
	if err != nil && spec.DType != l.model.DType && preprocessv1.RefusesDType(err) {
		l.useModelSpec()
		j.preprocess(ctx, l, batch, fatal, attempt)
		return
	}
	if err != nil {
		if transient(err) {
			fatal(fmt.Errorf("preprocess: %w", err))
			return
		}
		if len(batch) > 1 { // a refusal of the whole batch: find the culprit
			for _, it := range batch {
				j.preprocess(ctx, l, []*item{it}, fatal, attempt)
			}
			return
		}
		j.laneDone(batch[0], failEntry("preprocess", err), nil)
		return
	}
	j.cfg.Observer.Stage("preprocess", len(batch), time.Since(t0))
	if len(meta.Items) != len(batch) {
		fatal(fmt.Errorf("preprocess answered %d items for %d images", len(meta.Items), len(batch)))
		return
	}
	var rowBytes int
	if t != nil {
		rowBytes = len(t.Data) / t.Shape[0]
		l.shapeMu.Lock()
		if l.rowShape == nil {
			l.rowShape = append([]int(nil), t.Shape[1:]...)
		} else if fmt.Sprint(l.rowShape) != fmt.Sprint(t.Shape[1:]) {
			l.shapeMu.Unlock()
			fatal(fmt.Errorf("preprocess answered rows %v after %v", t.Shape[1:], l.rowShape))
			return
		}
		l.shapeMu.Unlock()
	}
	var again []*item
	for _, st := range meta.Items {
		if st.Index < 0 || st.Index >= len(batch) {
			fatal(fmt.Errorf("preprocess answered item index %d of %d", st.Index, len(batch)))
			return
		}
		it := batch[st.Index]
		if st.Error != nil && (st.Error.Status >= 500 || st.Error.Status == http.StatusTooManyRequests) {
			again = append(again, it)
			continue
		}
		if st.Row < 0 || st.Error != nil {
			e := &Entry{Stage: "preprocess", Code: "preprocess_failed", Reason: "image refused"}
			if st.Error != nil {
				e.Code, e.Reason = st.Error.Code, st.Error.Message
			}
			j.laneDone(it, e, nil)
			continue
		}
		if l.idx == 0 && st.Facts != nil {
			it.mu.Lock()
			it.phash = st.Facts.PHash
			it.mu.Unlock()
			if other := j.tr.registerPHash(st.Facts.PHash, it.p.SKU); other != "" && j.tr.markDuplicate(it.p.SKU, other) {
				it.mu.Lock()
				it.dupOf, it.dupKind = other, "phash"
				it.mu.Unlock()
				if j.cfg.SkipDuplicates {
					j.laneDone(it, nil, &Entry{Code: CodeDuplicateImage, Reason: fmt.Sprintf("same image (phash %s) as SKU %s", st.Facts.PHash, other)})
					continue
				}
			}
		}
		data := t.Data[st.Row*rowBytes : (st.Row+1)*rowBytes : (st.Row+1)*rowBytes]
		select {
		case l.embedQ <- &row{it: it, data: data, dtype: t.DType}:
		case <-ctx.Done():
			return
		}
	}
	if len(again) > 0 {
		if attempt >= j.cfg.Retries {
			fatal(fmt.Errorf("preprocess kept answering 5xx/429 for %d images", len(again)))
			return
		}
		select {
		case <-time.After(min(100*time.Millisecond<<attempt, 2*time.Second)):
		case <-ctx.Done():
			return
		}
		j.preprocess(ctx, l, again, fatal, attempt+1)
	}
}

// ---- embed ----

// batchTensor joins the rows into one tensor. Rows are all uint8 or all of
// the model's dtype, except around a fall back from uint8 (a preprocess
// refused it): then the uint8 rows are widened here, as embed would.
func (l *lane) batchTensor(shape []int, batch []*row) (tensorv1.Tensor, error) {
	dt := batch[0].dtype
	mixed := slices.ContainsFunc(batch, func(r *row) bool { return r.dtype != dt })
	if mixed {
		dt = tensorv1.Float32
	}
	data := make([]byte, 0, len(batch)*len(batch[0].data)*dt.Size()/batch[0].dtype.Size())
	for _, r := range batch {
		if r.dtype == dt {
			data = append(data, r.data...)
			continue
		}
		if r.dtype != tensorv1.Uint8 || dt != tensorv1.Float32 {
			return tensorv1.Tensor{}, fmt.Errorf("preprocess answered %s rows beside %s ones", r.dtype, dt)
		}
		n := len(data)
		data = append(data, make([]byte, 4*len(r.data))...)
		if err := l.model.Widen(data[n:], r.data); err != nil {
			return tensorv1.Tensor{}, fmt.Errorf("widening a uint8 row: %w", err)
		}
	}
	return tensorv1.Tensor{DType: dt, Shape: shape, Data: data}, nil
}

func (j *Job) embedStage(ctx context.Context, l *lane, fatal func(error)) {
	for {
		batch, ok := gather(ctx, l.embedQ, j.cfg.EmbedBatch, j.cfg.Linger)
		if !ok {
			return
		}
		if ctx.Err() != nil {
			continue
		}
		l.shapeMu.Lock()
		shape := append([]int{len(batch)}, l.rowShape...)
		l.shapeMu.Unlock()
		t, err := l.batchTensor(shape, batch)
		if err != nil {
			fatal(err)
			continue
		}
		t0 := time.Now()
		var vecs [][]float32
		err = j.retry(ctx, func(ctx context.Context) error {
			e, err := l.t.Embed.Embed(ctx, t, l.t.Model)
			if err != nil {
				return err
			}
			if e.ModelID != l.t.Model || e.Dim != l.dim || len(e.Vectors) != len(batch) {
				return apierror.New(http.StatusBadGateway, CodeServiceResponse, "embed answered %d vectors of model %q dim %d, want %d of %q dim %d", len(e.Vectors), e.ModelID, e.Dim, len(batch), l.t.Model, l.dim)
			}
			vecs = e.Vectors
			return nil
		})
		if ctx.Err() != nil {
			continue
		}
		if err != nil {
			if transient(err) {
				fatal(fmt.Errorf("embed: %w", err))
				continue
			}
			for _, r := range batch {
				j.laneDone(r.it, failEntry("embed", err), nil)
			}
			continue
		}
		j.cfg.Observer.Stage("embed", len(batch), time.Since(t0))
		for i, r := range batch {
			r.vec, r.data = vecs[i], nil
			select {
			case l.upsertQ <- r:
			case <-ctx.Done():
			}
		}
	}
}

// ---- upsert ----

func (j *Job) upsertStage(ctx context.Context, l *lane, fatal func(error)) {
	for {
		batch, ok := gather(ctx, l.upsertQ, j.cfg.UpsertBatch, j.cfg.Linger)
		if !ok {
			return
		}
		if ctx.Err() != nil {
			continue
		}
		t0 := time.Now()
		points := make([]searchv1.Point, 0, len(batch))
		keep := make([]*row, 0, len(batch))
		for _, r := range batch {
			if l.idx == 0 && j.cfg.NearDuplicateScore > 0 {
				skip, err := j.nearDuplicate(ctx, l, r)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					fatal(fmt.Errorf("search (near-duplicate check): %w", err))
					return
				}
				if skip {
					continue
				}
			}
			points = append(points, searchv1.Point{SKU: r.it.p.SKU, Vector: r.vec, Payload: r.it.p.Payload()})
			keep = append(keep, r)
		}
		if len(points) == 0 {
			continue
		}
		err := j.retry(ctx, func(ctx context.Context) error {
			res, err := l.t.Search.Upsert(ctx, l.t.Catalog, searchv1.UpsertRequest{Model: l.t.Model, Dim: l.dim, Points: points})
			if err == nil && res.Upserted != len(points) {
				return apierror.New(http.StatusBadGateway, CodeServiceResponse, "search upserted %d of %d points", res.Upserted, len(points))
			}
			return err
		})
		if ctx.Err() != nil {
			continue
		}
		if err != nil {
			if transient(err) {
				fatal(fmt.Errorf("upsert: %w", err))
				continue
			}
			if len(keep) > 1 { // a refused batch: upsert one by one to find the culprit
				for _, r := range keep {
					select {
					case <-ctx.Done():
						return
					default:
					}
					one := []searchv1.Point{{SKU: r.it.p.SKU, Vector: r.vec, Payload: r.it.p.Payload()}}
					err := j.retry(ctx, func(ctx context.Context) error {
						_, err := l.t.Search.Upsert(ctx, l.t.Catalog, searchv1.UpsertRequest{Model: l.t.Model, Dim: l.dim, Points: one})
						return err
					})
					if ctx.Err() != nil {
						return
					}
					if err != nil && transient(err) {
						fatal(fmt.Errorf("upsert: %w", err))
						return
					}
					if err != nil {
						j.laneDone(r.it, failEntry("upsert", err), nil)
					} else {
						j.laneDone(r.it, nil, nil)
					}
				}
				continue
			}
			j.laneDone(keep[0].it, failEntry("upsert", err), nil)
			continue
		}
		j.cfg.Observer.Stage("upsert", len(points), time.Since(t0))
		for _, r := range keep {
			j.laneDone(r.it, nil, nil)
		}
	}
}

// nearDuplicate asks search (the duplicates route) whether another SKU in
// the target space scores at least the threshold. skip reports that the
// item was finished as skipped.
func (j *Job) nearDuplicate(ctx context.Context, l *lane, r *row) (skip bool, err error) {
	var res searchv1.DuplicateResponse
	err = j.retry(ctx, func(ctx context.Context) error {
		var err error
		res, err = l.t.Search.Duplicates(ctx, l.t.Catalog, searchv1.DuplicateRequest{Model: l.t.Model, Dim: l.dim, Vector: r.vec,
			MinScore: j.cfg.NearDuplicateScore, ExcludeSKU: r.it.p.SKU, TopK: 1})
		return err
	})
	if err != nil {
		if ae, ok := apierror.As(err); ok && ae.Status == http.StatusNotFound {
			return false, nil // nothing stored yet
		}
		return false, err
	}
	if !res.Duplicate || len(res.Matches) == 0 {
		return false, nil
	}
	h := res.Matches[0]
	if h.SKU == r.it.p.SKU || h.Score < j.cfg.NearDuplicateScore {
		return false, nil
	}
	r.it.mu.Lock()
	flagged := r.it.dupOf != ""
	r.it.mu.Unlock()
	if !flagged && !j.tr.markDuplicate(r.it.p.SKU, h.SKU) {
		return false, nil // h is already reported as a duplicate of this one
	}
	r.it.mu.Lock()
	if r.it.dupOf == "" {
		r.it.dupOf, r.it.dupKind, r.it.dupScr = h.SKU, "near", h.Score
	}
	r.it.mu.Unlock()
	if j.cfg.SkipDuplicates {
		j.laneDone(r.it, nil, &Entry{Code: CodeNearDuplicate, Reason: fmt.Sprintf("near duplicate of SKU %s (score %.4f)", h.SKU, h.Score)})
		return true, nil
	}
	return false, nil
}
