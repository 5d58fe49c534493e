// Command index-bench measures bulk indexing against the real services: it
// generates about 2,000 product images (the reference catalog's photos with
// crops, flips, brightness changes), starts preprocess, embed and search
// from prebuilt binaries on loopback, measures the embed service's capacity
// alone (full batches, requests queued), then indexes the generated catalog
// with the indexer's job runner and reports images/s and the ratio to that
// capacity, measured in the same run (goal: >= 0.9).
//
//	go build -o $TMP/bin/ ./preprocess/cmd/preprocess ./embed/cmd/embed ./search/cmd/search
//	cd indexer && go run ./cmd/index-bench --bin-dir=$TMP/bin --repo=..
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/lookalike-dev/lookalike/shared/benchreport"
	"image"
	"image/color"
	stddraw "image/draw"
	"image/jpeg"
	_ "image/png" // the reference photos include PNGs
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/lookalike-dev/lookalike/indexer/internal/job"
	"github.com/lookalike-dev/lookalike/shared/catalog"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"
)

type options struct {
	binDir, repo, shared, model string
	n, side, embedBatch         int
	embedConc                   int
	capRows                     int
	keep                        bool
	embedCPUs                   int
}

func main() {
	var o options
	flag.StringVar(&o.binDir, "bin-dir", "", "folder with the preprocess, embed and search binaries")
	flag.StringVar(&o.repo, "repo", "..", "repository root (embed reads embed/models from it)")
	flag.StringVar(&o.shared, "shared", "", "shared data folder (default $LOOKALIKE_SHARED or <repo>/../shared)")
	flag.StringVar(&o.model, "model", "mobilenetv2-int8-v1", "model id")
	flag.IntVar(&o.n, "n", 2000, "images to index")
	flag.IntVar(&o.side, "side", 512, "longest side of the generated images")
	flag.IntVar(&o.embedBatch, "embed-batch", 32, "rows per embed call (indexer and capacity probe)")
	flag.IntVar(&o.embedConc, "embed-concurrency", 2, "embed calls in flight (indexer and capacity probe)")
	flag.IntVar(&o.capRows, "capacity-rows", 1024, "rows embedded for each capacity measurement")
	flag.BoolVar(&o.keep, "keep", false, "keep the temp folder")
	flag.IntVar(&o.embedCPUs, "embed-cpus", 0, "pin embed to this many CPUs and the rest (preprocess, search, indexer) to the others, like dedicated embed nodes (taskset; 0: no pinning, -1: half the CPUs)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "index-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	repo, err := filepath.Abs(o.repo)
	if err != nil {
		return err
	}
	if o.shared == "" {
		o.shared = os.Getenv("LOOKALIKE_SHARED")
	}
	if o.shared == "" {
		o.shared = filepath.Join(repo, "..", "shared")
	}
	if o.binDir == "" {
		return errors.New("--bin-dir is required (go build -o DIR/ ./preprocess/cmd/preprocess ./embed/cmd/embed ./search/cmd/search)")
	}
	tmp, err := os.MkdirTemp("", "index-bench-")
	if err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(tmp)
	}

	// 1. Images.
	t0 := time.Now()
	catPath, err := generate(filepath.Join(o.shared, "catalog"), filepath.Join(tmp, "catalog"), o.n, o.side)
	if err != nil {
		return fmt.Errorf("generating images: %w", err)
	}
	fmt.Printf("generated %d images (longest side %d px) in %.1fs\n", o.n, o.side, time.Since(t0).Seconds())

	pinEmbed, pinRest := "", ""
	if o.embedCPUs < 0 {
		o.embedCPUs = runtime.NumCPU() / 2
	}
	if o.embedCPUs > 0 && o.embedCPUs < runtime.NumCPU() {
		if _, err := exec.LookPath("taskset"); err == nil {
			pinEmbed = fmt.Sprintf("0-%d", o.embedCPUs-1)
			pinRest = fmt.Sprintf("%d-%d", o.embedCPUs, runtime.NumCPU()-1)
			fmt.Printf("pinning: embed on CPUs %s, preprocess, search and the indexer on CPUs %s\n", pinEmbed, pinRest)
			// The indexer (this process) runs on the rest too (after generating).
			if err := exec.Command("taskset", "-a", "-p", "-c", pinRest, fmt.Sprint(os.Getpid())).Run(); err != nil {
				return fmt.Errorf("pinning the bench: %w", err)
			}
		} else {
			fmt.Println("pinning: off (no taskset)")
		}
	}

	// 2. Services.
	svc, err := startServices(ctx, o, repo, tmp, pinEmbed, pinRest)
	defer svc.stop()
	if err != nil {
		return err
	}
	pre := &preprocessv1.Client{BaseURL: svc.url["preprocess"]}
	emb := &embedv1.Client{BaseURL: svc.url["embed"]}
	sea := &searchv1.Client{BaseURL: svc.url["search"]}

	// 3. Embed capacity alone (before).
	capBefore, err := embedCapacity(ctx, o, pre, emb, catPath)
	if err != nil {
		return fmt.Errorf("measuring embed capacity: %w", err)
	}
	fmt.Printf("embed alone:   %7.1f images/s (batch %d, %d in flight, %d rows)\n", capBefore, o.embedBatch, o.embedConc, o.capRows)

	preCap, err := preprocessCapacity(ctx, o, pre, emb, catPath)
	if err != nil {
		return fmt.Errorf("measuring preprocess capacity: %w", err)
	}
	fmt.Printf("preprocess alone: %4.1f images/s (batch 8, 3 in flight, 256 images)\n", preCap)

	// 4. Index.
	obs := &stageObserver{busy: map[string]time.Duration{}, items: map[string]int{}, calls: map[string]int{}}
	j, err := job.New(job.Config{
		Observer: obs,
		Catalog:  catPath, StateDir: filepath.Join(tmp, "state"),
		Targets:    []job.Target{{Model: o.model, Catalog: "bench", MakeAlias: true, Preprocess: pre, Embed: emb, Search: sea}},
		EmbedBatch: o.embedBatch, EmbedConcurrency: o.embedConc, PreprocessWorkers: 3, PreprocessBatch: 8,
		FetchWorkers: 4, UpsertBatch: 128, MaxErrorRatio: 0.01,
	})
	if err != nil {
		return err
	}
	sum, err := j.Run(ctx)
	if err != nil {
		return fmt.Errorf("indexing: %w", err)
	}
	rate := float64(sum.Counts.Done) / sum.ElapsedSeconds
	fmt.Printf("indexer:       %7.1f images/s (%d done, %d failed in %.1fs)\n", rate, sum.Counts.Done, sum.Counts.Failed, sum.ElapsedSeconds)

	obs.mu.Lock()
	inFlight := obs.busy["embed"].Seconds() / sum.ElapsedSeconds
	meanBatch := float64(obs.items["embed"]) / float64(max(obs.calls["embed"], 1))
	obs.mu.Unlock()
	fmt.Printf("embed during indexing: %.2f of %d calls in flight on average, %.1f rows per call (batch %d)\n", inFlight, o.embedConc, meanBatch, o.embedBatch)

	// 5. Embed capacity alone (after), to even out drift.
	capAfter, err := embedCapacity(ctx, o, pre, emb, catPath)
	if err != nil {
		return fmt.Errorf("measuring embed capacity: %w", err)
	}
	fmt.Printf("embed alone:   %7.1f images/s (after)\n", capAfter)
	capacity := (capBefore + capAfter) / 2
	cnt, err := sea.Count(ctx, "bench", o.model)
	if err != nil {
		return fmt.Errorf("counting: %w", err)
	}
	ratio := rate / capacity
	// The most any pipeline can reach here: with embed on CPUs of its own,
	// the slower of the two stages, min(E, P); when embed and preprocess
	// share the cores, each image costs both, 1/(1/E + 1/P).
	bound, boundName := min(capacity, preCap), "min(embed, preprocess) (separate CPUs)"
	if pinEmbed == "" {
		bound, boundName = 1/(1/capacity+1/preCap), "1/(1/embed + 1/preprocess) (shared CPUs)"
	}
	fmt.Printf("pipeline bound %s: %.1f images/s; the indexer reaches %.2f of it\n", boundName, bound, rate/bound)
	verdict := "MEETS the 0.9x goal"
	if ratio < 0.9 {
		verdict = "BELOW the 0.9x goal"
	}
	fmt.Printf("ratio:         %7.2fx of embed capacity (%s); search holds %d points; %d CPUs\n", ratio, verdict, cnt.Count, runtime.NumCPU())
	benchreport.Print(os.Stdout, benchreport.Stage{Stage: "bulk indexing", Rows: []benchreport.Row{{
		Name: fmt.Sprintf("indexer, %d generated images (%.2f of the pipeline bound)", o.n, rate/bound), Figure: rate, Unit: "img/s",
		Reference: "embed capacity alone", ReferenceFigure: capacity, Ratio: ratio, Goal: 0.9}}})
	out, _ := json.Marshal(map[string]any{"images": o.n, "side": o.side, "index_images_per_s": rate, "embed_capacity_images_per_s": capacity,
		"embed_capacity_before": capBefore, "embed_capacity_after": capAfter, "ratio": ratio, "preprocess_capacity_images_per_s": preCap, "pipeline_bound_images_per_s": bound, "pinned": pinEmbed != "", "embed_calls_in_flight": inFlight, "embed_rows_per_call": meanBatch, "ratio_to_bound": rate / bound, "goal": 0.9, "points": cnt.Count, "cpus": runtime.NumCPU()})
	fmt.Println(string(out))
	if cnt.Count != int64(sum.Counts.Done) || sum.Counts.Done != o.n {
		return fmt.Errorf("search holds %d points, %d done of %d", cnt.Count, sum.Counts.Done, o.n)
	}
	return nil
}

// generate writes n JPEG variants of the reference photos and a catalog.
func generate(refDir, dir string, n, side int) (string, error) {
	f, err := os.Open(filepath.Join(refDir, "catalog.jsonl"))
	if err != nil {
		return "", fmt.Errorf("reference catalog: %w", err)
	}
	defer f.Close()
	var paths, skus []string
	r := catalog.NewReader(f, catalog.JSONL)
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil || rec.Err != nil {
			return "", fmt.Errorf("reference catalog line %d: %v %v", rec.Line, err, rec.Err)
		}
		paths = append(paths, filepath.Join(refDir, rec.Product.Image))
		skus = append(skus, rec.Product.SKU)
	}
	srcs := make([]*image.RGBA, len(paths))
	derrs := make([]error, len(paths))
	var dwg sync.WaitGroup
	dsem := make(chan struct{}, runtime.NumCPU())
	for i, p := range paths {
		dwg.Go(func() {
			dsem <- struct{}{}
			defer func() { <-dsem }()
			b, err := os.ReadFile(p)
			if err != nil {
				derrs[i] = err
				return
			}
			img, _, err := image.Decode(bytes.NewReader(b))
			if err != nil {
				derrs[i] = fmt.Errorf("decoding %s: %w", p, err)
				return
			}
			srcs[i] = shrink(toRGBA(img), side)
		})
	}
	dwg.Wait()
	if err := errors.Join(derrs...); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Join(dir, "img"), 0o755); err != nil {
		return "", err
	}
	lines := make([][]byte, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	sem := make(chan struct{}, runtime.NumCPU())
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			src := srcs[i%len(srcs)]
			img := edit(src, uint64(i))
			var buf bytes.Buffer
			if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}); err != nil {
				errs[i] = err
				return
			}
			name := fmt.Sprintf("img/v%05d.jpg", i)
			errs[i] = os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644)
			lines[i], _ = json.Marshal(map[string]any{"sku": fmt.Sprintf("%s-V%04d", skus[i%len(skus)], i), "image": name,
				"title": fmt.Sprintf("variant %d of %s", i, skus[i%len(skus)]), "category": "bench", "price": float64(i%100) + 0.5})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "catalog.jsonl")
	return path, os.WriteFile(path, append(bytes.Join(lines, []byte("\n")), '\n'), 0o644)
}

func toRGBA(img image.Image) *image.RGBA {
	if m, ok := img.(*image.RGBA); ok {
		return m
	}
	b := img.Bounds()
	m := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	stddraw.Draw(m, m.Bounds(), img, b.Min, stddraw.Src)
	return m
}

func shrink(img *image.RGBA, side int) *image.RGBA {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if max(w, h) <= side {
		return img
	}
	if w >= h {
		h, w = h*side/w, side
	} else {
		w, h = w*side/h, side
	}
	return scale(img, b, max(w, 1), max(h, 1))
}

// scale resamples the src rectangle r to w x h by averaging the source
// pixels under each destination pixel (a box filter: no aliasing when
// shrinking, nearest when growing).
func scale(src *image.RGBA, r image.Rectangle, w, h int) *image.RGBA {
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		sy0 := r.Min.Y + y*r.Dy()/h
		sy1 := max(r.Min.Y+(y+1)*r.Dy()/h, sy0+1)
		for x := range w {
			sx0 := r.Min.X + x*r.Dx()/w
			sx1 := max(r.Min.X+(x+1)*r.Dx()/w, sx0+1)
			var rs, gs, bs, n uint64
			for sy := sy0; sy < sy1; sy++ {
				for sx := sx0; sx < sx1; sx++ {
					o := src.PixOffset(sx, sy)
					rs, gs, bs, n = rs+uint64(src.Pix[o]), gs+uint64(src.Pix[o+1]), bs+uint64(src.Pix[o+2]), n+1
				}
			}
			dst.SetRGBA(x, y, color.RGBA{uint8(rs / n), uint8(gs / n), uint8(bs / n), 255})
		}
	}
	return dst
}

// edit makes one variant: a crop (70-100%), maybe a mirror, a brightness
// change (-25%..+25%) and a small rescale.
func edit(src *image.RGBA, seed uint64) image.Image {
	r := rand.New(rand.NewPCG(seed, 7))
	b := src.Bounds()
	f := 0.7 + 0.3*r.Float64()
	cw, ch := max(int(float64(b.Dx())*f), 8), max(int(float64(b.Dy())*f), 8)
	x0 := b.Min.X + r.IntN(b.Dx()-cw+1)
	y0 := b.Min.Y + r.IntN(b.Dy()-ch+1)
	zoom := 0.8 + 0.4*r.Float64()
	ow, oh := max(int(float64(cw)*zoom), 8), max(int(float64(ch)*zoom), 8)
	dst := scale(src, image.Rect(x0, y0, x0+cw, y0+ch), ow, oh)
	flip := r.IntN(2) == 0
	gain := 0.75 + 0.5*r.Float64()
	out := image.NewRGBA(dst.Bounds())
	for y := range oh {
		for x := range ow {
			sx := x
			if flip {
				sx = ow - 1 - x
			}
			c := dst.RGBAAt(sx, y)
			out.SetRGBA(x, y, color.RGBA{clamp(float64(c.R) * gain), clamp(float64(c.G) * gain), clamp(float64(c.B) * gain), 255})
		}
	}
	return out
}

func clamp(v float64) uint8 { return uint8(min(max(v, 0), 255)) }

// embedCapacity preprocesses one batch of generated images, then sends
// capRows rows to embed in full batches with embedConc calls in flight.
func embedCapacity(ctx context.Context, o options, pre *preprocessv1.Client, emb *embedv1.Client, catPath string) (float64, error) {
	m, err := emb.Model(ctx, o.model)
	if err != nil {
		return 0, err
	}
	imgs := make([][]byte, o.embedBatch)
	for i := range imgs {
		if imgs[i], err = os.ReadFile(filepath.Join(filepath.Dir(catPath), fmt.Sprintf("img/v%05d.jpg", i))); err != nil {
			return 0, err
		}
	}
	spec := m.WireSpec() // the tensors the indexer sends
	_, t, err := pre.PreprocessBatch(ctx, imgs, &spec)
	if err != nil {
		return 0, err
	}
	if t == nil || t.Shape[0] != o.embedBatch {
		return 0, errors.New("preprocess refused capacity images")
	}
	batch := tensorv1.Tensor{DType: t.DType, Shape: t.Shape, Data: append([]byte(nil), t.Data...)}
	if _, err := emb.Embed(ctx, batch, o.model); err != nil { // warm
		return 0, err
	}
	calls := max(o.capRows/o.embedBatch, 1)
	next := make(chan struct{}, calls)
	for range calls {
		next <- struct{}{}
	}
	close(next)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	start := time.Now()
	for range o.embedConc {
		wg.Go(func() {
			for range next {
				if _, err := emb.Embed(ctx, batch, o.model); err != nil {
					mu.Lock()
					firstErr = errors.Join(firstErr, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(calls*o.embedBatch) / time.Since(start).Seconds(), nil
}

// preprocessCapacity sends 256 generated images in batches of 8, 3 calls in flight.
func preprocessCapacity(ctx context.Context, o options, pre *preprocessv1.Client, emb *embedv1.Client, catPath string) (float64, error) {
	m, err := emb.Model(ctx, o.model)
	if err != nil {
		return 0, err
	}
	spec := m.WireSpec() // the tensors the indexer asks for
	const total, batch = 256, 8
	imgs := make([][]byte, min(total, o.n))
	for i := range imgs {
		if imgs[i], err = os.ReadFile(filepath.Join(filepath.Dir(catPath), fmt.Sprintf("img/v%05d.jpg", i))); err != nil {
			return 0, err
		}
	}
	next := make(chan [][]byte, len(imgs)/batch+1)
	for i := 0; i < len(imgs); i += batch {
		next <- imgs[i:min(i+batch, len(imgs))]
	}
	close(next)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	start := time.Now()
	for range 3 {
		wg.Go(func() {
			for b := range next {
				if _, _, err := pre.PreprocessBatch(ctx, b, &spec); err != nil {
					mu.Lock()
					firstErr = errors.Join(firstErr, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return float64(len(imgs)) / time.Since(start).Seconds(), firstErr
}

// stageObserver sums the time and items of each stage's calls.
type stageObserver struct {
	mu    sync.Mutex
	busy  map[string]time.Duration
	items map[string]int
	calls map[string]int
}

func (s *stageObserver) Item(string, string, string) {}

func (s *stageObserver) Stage(stage string, n int, d time.Duration) {
	s.mu.Lock()
	s.busy[stage] += d
	s.items[stage] += n
	s.calls[stage]++
	s.mu.Unlock()
}

type services struct {
	url   map[string]string
	procs []*exec.Cmd
	logs  []*os.File
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startServices runs the three services on free loopback ports and waits
// for them to be ready (embed warms its models up first).
func startServices(ctx context.Context, o options, repo, tmp, pinEmbed, pinRest string) (*services, error) {
	s := &services{url: map[string]string{}}
	env := append(os.Environ(),
		"ONNXRUNTIME_LIB="+filepath.Join(repo, ".cache", "onnxruntime", "libonnxruntime.so.1"),
		"MODEL_DIR="+filepath.Join(o.shared, "models"))
	for _, name := range []string{"preprocess", "embed", "search"} {
		addr, err := freePort()
		if err != nil {
			return s, err
		}
		args := []string{"--addr=" + addr, "--log-level=warn", "--drain-delay=0s"}
		switch name {
		case "embed":
			args = append(args, "--models="+o.model)
			if pinEmbed != "" {
				args = append(args, fmt.Sprintf("--intra-op-threads=%d", o.embedCPUs))
			}
		case "search":
			args = append(args, "--data-dir="+filepath.Join(tmp, "search-data"))
		}
		c := exec.Command(filepath.Join(o.binDir, name), args...)
		if pin := map[bool]string{true: pinEmbed, false: pinRest}[name == "embed"]; pin != "" {
			c = exec.Command("taskset", append([]string{"-c", pin, filepath.Join(o.binDir, name)}, args...)...)
		}
		c.Dir, c.Env = repo, env
		if name == "preprocess" {
			c.Env = append(env, "MALLOC_ARENA_MAX=1") // as its image sets: one malloc arena for libjpeg
		}
		lf, err := os.Create(filepath.Join(tmp, name+".log"))
		if err != nil {
			return s, err
		}
		c.Stdout, c.Stderr = lf, lf
		if err := c.Start(); err != nil {
			return s, fmt.Errorf("starting %s: %w", name, err)
		}
		s.procs, s.logs = append(s.procs, c), append(s.logs, lf)
		s.url[name] = "http://" + addr
	}
	deadline := time.Now().Add(3 * time.Minute)
	for name, u := range s.url {
		for {
			if ctx.Err() != nil {
				return s, ctx.Err()
			}
			resp, err := http.Get(u + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(filepath.Join(tmp, name+".log"))
				return s, fmt.Errorf("%s not ready after 3 minutes; log:\n%s", name, tail(b))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	slog.Info("services ready", "urls", s.url)
	return s, nil
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

func (s *services) stop() {
	for _, c := range s.procs {
		_ = c.Process.Signal(syscall.SIGTERM)
	}
	for _, c := range s.procs {
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = c.Process.Kill()
		}
	}
	for _, f := range s.logs {
		f.Close()
	}
}
