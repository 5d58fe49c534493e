// Package preprocessor turns image bytes into model input tensors: limits,
// decode (DCT-scaled for JPEG when possible), the fused resize/crop/
// normalise step, the perceptual hash, metrics and a CPU budget shared by
// single and batch requests.
package preprocessor

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"sync"
	"time"

	"github.com/corona10/goimagehash"
	"github.com/x448/float16"
	"golang.org/x/sync/semaphore"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/bufpool"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"

	"github.com/lookalike-dev/lookalike/preprocess/internal/imagedecode"
	"github.com/lookalike-dev/lookalike/preprocess/internal/resample"
	"github.com/lookalike-dev/lookalike/preprocess/internal/turbojpeg"
)

// Options configure a Processor.
type Options struct {
	Limits imagedecode.Limits
	// DefaultSpec applies when a request names none.
	DefaultSpec preprocessv1.Spec
	// Background is the "#rrggbb" alpha is composited on when the spec
	// names none ("" means white).
	Background string
	// Concurrency bounds the images processed at once across all requests
	// (the CPU budget); 0 means GOMAXPROCS.
	Concurrency int
	// DecodeRatio is the fewest decoded pixels per output pixel a JPEG may
	// be reduced to in the DCT domain (default 1). HQDecodeRatio applies to
	// the high-accuracy interpolations lanczos3 and catmullrom (default 2).
	DecodeRatio, HQDecodeRatio float64
	// FastIDCT uses libjpeg-turbo's fast IDCT and upsampling in the default
	// mode (never in the high-accuracy mode).
	FastIDCT bool
	// PureGo turns libjpeg-turbo off (tests and the bench use it).
	PureGo bool
	// NoHash skips the perceptual hash (Facts.PHash stays empty).
	NoHash bool
	// KeepFreedMemory, when > 0, has the C allocator keep up to that many
	// freed bytes for libjpeg's next image instead of returning them to the
	// kernel (turbojpeg.KeepFreedMemory: 3.5x less CPU on repeated large
	// progressive JPEGs). It tunes the whole process's malloc.
	KeepFreedMemory int
	// DecodeMemory bounds the bytes all decodes in progress are expected to
	// allocate together (a weighted semaphore: a decode waits, within its
	// request's deadline, until its estimate fits); default
	// DefaultDecodeMemory.
	DecodeMemory int64
	// ImageMemory is the most one image's decode may be expected to
	// allocate (image_too_complex above it); default DefaultImageMemory,
	// at most DecodeMemory.
	ImageMemory int64
}

// Decode memory defaults: a 1 GiB pod leaves the rest to the Go heap
// (request bodies, tensors) and the runtime.
const (
	DefaultDecodeMemory = 384 << 20
	DefaultImageMemory  = 256 << 20
)

// DefaultScanLimits bound a progressive JPEG's scans: encoders write about
// ten, each covering a block a handful of times.
var DefaultScanLimits = imagedecode.ScanLimits{MaxScans: 256, MaxVisitsPerBlock: 32}

// DefaultKeepFreedMemory is the service's KeepFreedMemory (256 MiB).
const DefaultKeepFreedMemory = 256 << 20

// Processor is safe for concurrent use.
type Processor struct {
	opt  Options
	bg   [3]uint8
	sem  chan struct{}
	mem  *semaphore.Weighted
	pool imagedecode.Pool
	work sync.Pool
	// rows recycles tensor rows (600 KB each for 224x224 float32) that
	// callers hand back with Recycle.
	rows    bufpool.Pool
	metrics *Metrics
}

type work struct {
	plan, hashPlan resample.Plan
	scratch        resample.Scratch
	hashScratch    resample.Scratch
	levels         []uint8
	wide           []byte
}

// New builds a processor; m may be nil (no metrics).
func New(opt Options, m *Metrics) (*Processor, error) {
	if opt.DefaultSpec.Width == 0 {
		opt.DefaultSpec = preprocessv1.ImageNet()
	}
	if err := opt.DefaultSpec.Validate(); err != nil {
		return nil, fmt.Errorf("default spec: %w", err)
	}
	if opt.Concurrency <= 0 {
		opt.Concurrency = runtime.GOMAXPROCS(0)
	}
	if opt.DecodeRatio <= 0 {
		opt.DecodeRatio = 1
	}
	if opt.HQDecodeRatio <= 0 {
		opt.HQDecodeRatio = 2
	}
	if opt.Limits.Scans == (imagedecode.ScanLimits{}) {
		opt.Limits.Scans = DefaultScanLimits
	}
	if opt.DecodeMemory <= 0 {
		opt.DecodeMemory = DefaultDecodeMemory
	}
	if opt.ImageMemory <= 0 {
		opt.ImageMemory = DefaultImageMemory
	}
	opt.ImageMemory = min(opt.ImageMemory, opt.DecodeMemory)
	if m == nil {
		m = NopMetrics()
	}
	if opt.KeepFreedMemory > 0 && !opt.PureGo {
		if err := turbojpeg.KeepFreedMemory(opt.KeepFreedMemory); err != nil {
			return nil, fmt.Errorf("tuning the decoder's allocator: %w", err)
		}
	}
	bg := [3]uint8{255, 255, 255}
	if opt.Background != "" {
		var ok bool
		if bg, ok = parseBackground(opt.Background); !ok {
			return nil, fmt.Errorf("background %q is not #rrggbb", opt.Background)
		}
	}
	p := &Processor{opt: opt, bg: bg, sem: make(chan struct{}, opt.Concurrency), mem: semaphore.NewWeighted(opt.DecodeMemory), metrics: m}
	p.work.New = func() any { return new(work) }
	return p, nil
}

// DefaultSpec is the spec applied when a request names none.
func (p *Processor) DefaultSpec() preprocessv1.Spec { return p.opt.DefaultSpec }

// Concurrency is the CPU budget.
func (p *Processor) Concurrency() int { return cap(p.sem) }

// Result is one processed image.
type Result struct {
	Facts preprocessv1.Facts
	// Data is the tensor row (one image) encoded in the spec's dtype,
	// little-endian.
	Data []byte
}

// ParseSpec decodes a spec header value; empty means the default.
func (p *Processor) ParseSpec(v string) (preprocessv1.Spec, error) {
	if v == "" {
		return p.opt.DefaultSpec, nil
	}
	s, err := preprocessv1.DecodeSpec(v)
	if err != nil {
		return preprocessv1.Spec{}, apierror.Wrap(err, 400, apierror.CodeInvalidArgument, "%s", errText(err))
	}
	return s, nil
}

func (p *Processor) acquire(ctx context.Context) error {
	select {
	case p.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Processor) release() { <-p.sem }

// admitter reserves a decode's expected bytes in the process-wide decode
// memory, waiting no longer than ctx allows.
func (p *Processor) admitter(ctx context.Context) imagedecode.Admit {
	return func(_ string, n int64) (func(), error) {
		if err := p.mem.Acquire(ctx, n); err != nil {
			return nil, err
		}
		p.metrics.reserved(n)
		var once sync.Once
		return func() {
			once.Do(func() {
				p.mem.Release(n)
				p.metrics.reserved(-n)
			})
		}, nil
	}
}

// Call tunes one Process call.
type Call struct {
	// NoHash skips the perceptual hash (Facts.PHash stays empty), as
	// Options.NoHash does for every call.
	NoHash bool
}

// Process turns one image into a tensor row. Errors are *apierror.Error.
func (p *Processor) Process(ctx context.Context, data []byte, spec preprocessv1.Spec) (Result, error) {
	return p.ProcessCall(ctx, data, spec, Call{})
}

// ProcessCall is Process tuned by c.
func (p *Processor) ProcessCall(ctx context.Context, data []byte, spec preprocessv1.Spec, c Call) (Result, error) {
	p.metrics.bytesIn(ctx, len(data))
	if err := p.acquire(ctx); err != nil {
		return Result{}, p.reject(ctx, apiError(err))
	}
	defer p.release()
	r, err := p.process(ctx, data, spec, c.NoHash || p.opt.NoHash)
	if err != nil {
		return Result{}, p.reject(ctx, apiError(err))
	}
	return r, nil
}

func (p *Processor) reject(ctx context.Context, e *apierror.Error) *apierror.Error {
	p.metrics.rejected(ctx, e.Code)
	return e
}

func parseBackground(s string) ([3]uint8, bool) {
	var r, g, b uint8
	if n, err := fmt.Sscanf(s, "#%02x%02x%02x", &r, &g, &b); err != nil || n != 3 || len(s) != 7 {
		return [3]uint8{}, false
	}
	return [3]uint8{r, g, b}, true
}

// highAccuracy reports whether the spec asks for the high-accuracy mode.
func highAccuracy(s preprocessv1.Spec) bool {
	return s.Interpolation == "lanczos3" || s.Interpolation == "catmullrom"
}

func (p *Processor) process(ctx context.Context, data []byte, spec preprocessv1.Spec, noHash bool) (Result, error) {
	if err := spec.Validate(); err != nil {
		return Result{}, apierror.Wrap(err, 400, apierror.CodeInvalidArgument, "%s", errText(err))
	}
	k, err := resample.KernelFor(spec.Interpolation)
	if err != nil {
		return Result{}, apierror.Wrap(err, 400, apierror.CodeInvalidArgument, "%s", errText(err))
	}
	cfg, err := imagedecode.Inspect(data, p.opt.Limits)
	if err != nil {
		return Result{}, err
	}
	t := resample.Target{Mode: spec.ResizeMode, W: spec.Width, H: spec.Height, Shorter: spec.ResizeShorter, Kernel: k}
	ratio, fast := p.opt.DecodeRatio, p.opt.FastIDCT
	if highAccuracy(spec) {
		ratio, fast = p.opt.HQDecodeRatio, false
	}
	bg := p.bg
	if spec.Background != "" {
		bg, _ = parseBackground(spec.Background) // Validate checked it
	}

	start := time.Now()
	img, err := imagedecode.Decode(ctx, data, cfg, imagedecode.Options{
		MinScale:   ratio * resample.ResizeScale(t, cfg.Width, cfg.Height, cfg.Orientation),
		Fast:       fast,
		Background: bg,
		PureGo:     p.opt.PureGo,
		Budget:     p.opt.ImageMemory,
		Admit:      p.admitter(ctx),
	}, &p.pool)
	if err != nil {
		return Result{}, err
	}
	defer img.Release()
	p.metrics.decoded(ctx, cfg.Format, time.Since(start))
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}

	start = time.Now()
	w := p.work.Get().(*work)
	defer p.work.Put(w)
	g := resample.Geometry{StoredW: cfg.Width, StoredH: cfg.Height, Orientation: cfg.Orientation, DecodedW: img.W, DecodedH: img.H, Scale: img.Scale}
	w.plan.Prepare(g, t)
	if err := w.plan.Run(img, &w.scratch, ctx.Err); err != nil {
		return Result{}, err
	}
	out, err := p.encode(w, spec, resample.Order{BGR: spec.ChannelOrder == "BGR", NHWC: spec.Layout == "NHWC", Background: bg})
	if err != nil {
		return Result{}, err
	}
	p.metrics.resized(ctx, cfg.Format, time.Since(start))

	facts := preprocessv1.Facts{Format: cfg.Format, Width: cfg.Width, Height: cfg.Height, Orientation: cfg.Orientation, Bytes: len(data)}
	if !noHash {
		h, err := p.phash(w, img, g, bg)
		if err != nil {
			return Result{}, fmt.Errorf("hashing: %w", err)
		}
		facts.PHash = h
	}
	return Result{Facts: facts, Data: out}, nil
}

// phash is goimagehash's 64-bit pHash of the whole oriented image, computed
// on a 64x64 box-filtered rendition of the decoded pixels.
func (p *Processor) phash(w *work, img *imagedecode.Image, g resample.Geometry, bg [3]uint8) (string, error) {
	box, _ := resample.KernelFor("box")
	w.hashPlan.Prepare(g, resample.Target{Mode: resample.Squash, W: 64, H: 64, Kernel: box})
	if err := w.hashPlan.Run(img, &w.hashScratch, nil); err != nil {
		return "", err
	}
	h, err := goimagehash.PerceptionHash(w.hashPlan.Render(&w.hashScratch, bg))
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%016x", h.GetHash()), nil
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// encode writes the output levels in the spec's dtype into a pooled row:
// as they are (uint8, straight into the row), or through the spec's scale,
// mean and std (float32, float16).
func (p *Processor) encode(w *work, spec preprocessv1.Spec, o resample.Order) ([]byte, error) {
	n := spec.Width * spec.Height * 3
	if spec.DType == "uint8" {
		out := p.rows.Get(n)
		w.plan.Write(&w.scratch, o, out)
		return out, nil
	}
	w.levels = grow(w.levels, n)
	w.plan.Write(&w.scratch, o, w.levels)
	if spec.DType == "float16" {
		w.wide = grow(w.wide, 4*n)
		if err := spec.Widen(w.wide, w.levels); err != nil {
			return nil, fmt.Errorf("normalising: %w", err)
		}
		out := p.rows.Get(2 * n)
		for i := range n {
			f := math.Float32frombits(binary.LittleEndian.Uint32(w.wide[4*i:]))
			binary.LittleEndian.PutUint16(out[2*i:], float16.Fromfloat32(f).Bits())
		}
		return out, nil
	}
	out := p.rows.Get(4 * n)
	if err := spec.Widen(out, w.levels); err != nil {
		p.rows.Put(out)
		return nil, fmt.Errorf("normalising: %w", err)
	}
	return out, nil
}

// Recycle hands back a Result's Data once nothing refers to it any more
// (the answer is written); the next image's row may reuse it.
func (p *Processor) Recycle(data []byte) { p.rows.Put(data) }

// DType maps the spec dtype to the wire dtype.
func DType(spec preprocessv1.Spec) tensorv1.DType {
	switch spec.DType {
	case "float16":
		return tensorv1.Float16
	case "uint8":
		return tensorv1.Uint8
	}
	return tensorv1.Float32
}

// Item is one image of a batch.
type Item struct {
	Data []byte
	// Err, when set, is the item's failure before processing (e.g. a part
	// over the byte limit); it is reported as is.
	Err error
}

// ProcessBatch processes items in parallel within the CPU budget and
// returns the batch metadata and the tensor of the images that succeeded
// (nil when none did).
func (p *Processor) ProcessBatch(ctx context.Context, items []Item, spec preprocessv1.Spec) (preprocessv1.BatchMeta, *tensorv1.Tensor) {
	results := make([]Result, len(items))
	errs := make([]*apierror.Error, len(items))
	var wg sync.WaitGroup
	next := make(chan int)
	workers := min(cap(p.sem), len(items))
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if items[i].Err != nil {
					errs[i] = p.reject(ctx, apiError(items[i].Err))
					continue
				}
				r, err := p.Process(ctx, items[i].Data, spec)
				if err != nil {
					errs[i], _ = apierror.As(err)
					continue
				}
				results[i] = r
			}
		}()
	}
	for i := range items {
		next <- i
	}
	close(next)
	wg.Wait()

	meta := preprocessv1.BatchMeta{Spec: spec, Items: make([]preprocessv1.ItemStatus, len(items))}
	size := 0
	for i := range items {
		if errs[i] == nil {
			size += len(results[i].Data)
		}
	}
	data := make([]byte, 0, size) // one allocation: appending grew it ~40 times for 8 rows
	rows := 0
	for i := range items {
		st := preprocessv1.ItemStatus{Index: i, Row: -1}
		if e := errs[i]; e != nil {
			st.Error = &preprocessv1.ItemError{Status: e.Status, Code: e.Code, Message: e.Message}
		} else {
			f := results[i].Facts
			st.Facts, st.Row = &f, rows
			data = append(data, results[i].Data...)
			p.Recycle(results[i].Data)
			rows++
		}
		meta.Items[i] = st
	}
	if rows == 0 {
		return meta, nil
	}
	return meta, &tensorv1.Tensor{DType: DType(spec), Shape: spec.Shape(rows), Data: data}
}
