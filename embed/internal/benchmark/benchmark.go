// Package benchmark measures the embed service against a bare ONNX Runtime
// session in the same process: same model, same batch, same threads. The
// service runs in process behind real HTTP (httptest) with the registry,
// batcher and handlers the binary uses.
package benchmark

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lookalike-dev/lookalike/embed/internal/batcher"
	"github.com/lookalike-dev/lookalike/embed/internal/httpapi"
	"github.com/lookalike-dev/lookalike/embed/internal/modelspec"
	"github.com/lookalike-dev/lookalike/embed/internal/ortsession"
	"github.com/lookalike-dev/lookalike/embed/internal/registry"
	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/bodyfile"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"
	"github.com/lookalike-dev/lookalike/shared/server"
)

// Options of a benchmark run.
type Options struct {
	ORTLib    string
	SpecDir   string
	ModelDir  string
	Model     string
	Session   ortsession.SessionOptions // provider and threads
	Batch     int                       // the batch compared (32)
	Clients   int                       // concurrent single-image clients (32)
	BareSizes []int                     // bare batch sizes to find the best (1, 8, 32)
	Duration  time.Duration             // per measurement
	Rounds    int                       // measurements alternate bare and service; the best of each is kept
	// Workers is the service's concurrent inferences per model; the bare
	// reference runs as many sessions at once, so both use the same threads.
	Workers int
	// BatchClients send the batch requests (default Workers+2: the queue
	// always holds the next batch while the others run or travel).
	BatchClients int
	MaxDelay     time.Duration
	Out          io.Writer
}

// Report holds images per second.
type Report struct {
	Provider      string
	Bare          map[int]float64
	BestBare      float64
	BestBareBatch int
	ServiceBatch  float64 // requests of Batch images
	// ServiceBatchNoHTTP is the same through the registry model directly.
	ServiceBatchNoHTTP float64
	ServiceSingle      float64 // Clients concurrent single-image requests
	SingleBatches      float64 // mean images per inference in the single-image run
}

// RatioBatch is service/bare at Batch.
func (r Report) RatioBatch(batch int) float64 { return r.ServiceBatch / r.Bare[batch] }

// RatioSingle is the single-image service throughput over the best bare one.
func (r Report) RatioSingle() float64 { return r.ServiceSingle / r.BestBare }

// Run measures.
func Run(ctx context.Context, o Options) (Report, error) {
	rt, err := ortsession.NewRuntime(o.ORTLib)
	if err != nil {
		return Report{}, err
	}
	defer rt.Close()
	specs, err := modelspec.ReadDir(o.SpecDir)
	if err != nil {
		return Report{}, err
	}
	var spec modelspec.Spec
	for _, s := range specs {
		if s.ID == o.Model {
			spec = s
		}
	}
	if spec.ID == "" {
		return Report{}, fmt.Errorf("no spec for model %q in %s", o.Model, o.SpecDir)
	}
	l, err := modelspec.Load(spec, o.ModelDir)
	if err != nil {
		return Report{}, err
	}
	sopts := ortsession.OptionsFor(l, o.Session)
	maxN := o.Batch
	for _, b := range o.BareSizes {
		maxN = max(maxN, b)
	}
	input := randomItems(maxN, spec.ItemBytes())
	item := spec.ItemBytes()

	rep := Report{Bare: map[int]float64{}}
	workers := max(o.Workers, 1)
	batchClients := o.BatchClients
	if batchClients < 1 {
		batchClients = workers + 2
	}
	sizes := append([]int(nil), o.BareSizes...)
	if !contains(sizes, o.Batch) {
		sizes = append(sizes, o.Batch)
	}
	reg := registry.New(registry.Config{
		SpecDir: o.SpecDir, ModelDir: o.ModelDir, Models: []string{o.Model}, DefaultModel: o.Model, WarmupFullBatch: true,
		Batching: registry.Batching{MaxBatch: o.Batch, MaxDelay: o.MaxDelay, QueueImages: 16 * o.Batch, Workers: workers},
		NewEncoder: func(l modelspec.Loaded) (registry.Encoder, error) {
			return rt.NewSession(l.ONNX, ortsession.OptionsFor(l, o.Session))
		},
	})
	if err := reg.LoadDir(ctx); err != nil {
		return Report{}, err
	}
	defer reg.Close(context.Background())
	e := echo.New()
	e.HTTPErrorHandler = func(err error, c echo.Context) { apierror.Write(c.Response(), server.ToAPIError(err)) }
	httpapi.New(reg, httpapi.Config{MaxRequestImages: o.Batch}).Register(e)
	srv := httptest.NewServer(e)
	defer srv.Close()
	client := &embedv1.Client{BaseURL: srv.URL}
	m, release, err := reg.Acquire(o.Model)
	if err != nil {
		return Report{}, err
	}
	defer release()

	batchT := tensorv1.Tensor{DType: spec.InputDType(), Shape: intShape(o.Batch, spec.Input.Shape), Data: input[:o.Batch*item]}
	single := tensorv1.Tensor{DType: spec.InputDType(), Shape: intShape(1, spec.Input.Shape), Data: input[:item]}
	for round := 1; round <= max(1, o.Rounds); round++ {
		fmt.Fprintf(o.Out, "round %d\n", round)
		for _, b := range sizes {
			cpu := startCPU()
			ips, provider, err := rt.BareThroughput(l.ONNX, sopts, input[:b*item], b, workers, o.Duration)
			cores := cpu()
			if err != nil {
				return Report{}, fmt.Errorf("bare batch %d: %w", b, err)
			}
			rep.Provider = provider
			rep.Bare[b] = max(rep.Bare[b], ips)
			if ips > rep.BestBare {
				rep.BestBare, rep.BestBareBatch = ips, b
			}
			fmt.Fprintf(o.Out, "  bare onnxruntime_go    batch %3d: %8.1f images/s (%.2f cores busy)\n", b, ips, cores)
		}
		// The registry model directly (batcher, no HTTP), then over HTTP.
		cpu := startCPU()
		ips, err := direct(ctx, m, batchT, workers+1, o.Duration)
		cores := cpu()
		if err != nil {
			return Report{}, fmt.Errorf("service batch %d without HTTP: %w", o.Batch, err)
		}
		rep.ServiceBatchNoHTTP = max(rep.ServiceBatchNoHTTP, ips)
		fmt.Fprintf(o.Out, "  batcher (no HTTP)      batch %3d: %8.1f images/s (%d callers, %.2f cores busy)\n", o.Batch, ips, workers+1, cores)
		cpu = startCPU()
		ips, _, err = drive(ctx, client, batchT, batchClients, o.Duration, m.Batcher().Stats)
		cores = cpu()
		if err != nil {
			return Report{}, fmt.Errorf("service batch %d: %w", o.Batch, err)
		}
		rep.ServiceBatch = max(rep.ServiceBatch, ips)
		fmt.Fprintf(o.Out, "  service (HTTP)         batch %3d: %8.1f images/s (%d clients, %.2f cores busy)\n", o.Batch, ips, batchClients, cores)
		cpu = startCPU()
		ips, mean, err := drive(ctx, client, single, o.Clients, o.Duration, m.Batcher().Stats)
		cores = cpu()
		if err != nil {
			return Report{}, fmt.Errorf("service single images: %w", err)
		}
		if ips > rep.ServiceSingle {
			rep.ServiceSingle, rep.SingleBatches = ips, mean
		}
		fmt.Fprintf(o.Out, "  service (HTTP) %3d clients x 1: %8.1f images/s (mean batch %.1f, %.2f cores busy)\n", o.Clients, ips, mean, cores)
	}
	return rep, nil
}

// drive runs clients posting t back to back for dur and returns images per
// second and the mean images per inference over the run. The body is encoded
// once into a file that every request sends with sendfile(2), so the load
// generator, which shares this machine's cores with the service, costs next
// to nothing: in production the callers run elsewhere.
func drive(ctx context.Context, client *embedv1.Client, t tensorv1.Tensor, clients int, dur time.Duration, stats func() batcher.Stats) (float64, float64, error) {
	body, err := tensorv1.Marshal(t)
	if err != nil {
		return 0, 0, err
	}
	f, err := bodyfile.Write(body)
	if err != nil {
		return 0, 0, err
	}
	defer f.Remove()
	url := strings.TrimRight(client.BaseURL, "/") + embedv1.RouteEmbed
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	before := stats()
	var images atomic.Int64
	var firstErr error
	var once sync.Once
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < dur && ctx.Err() == nil {
				if err := post(ctx, hc, url, f); err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
				images.Add(int64(t.Shape[0]))
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	after := stats()
	mean := 0.0
	if n := after.Inferences - before.Inferences; n > 0 {
		mean = float64(after.Images-before.Images) / float64(n)
	}
	return float64(images.Load()) / took.Seconds(), mean, firstErr
}

// post sends the body file (with sendfile(2)).
func post(ctx context.Context, hc *http.Client, url string, f bodyfile.File) error {
	req, err := f.NewRequest(ctx, http.MethodPost, url, tensorv1.MediaType)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req) // closes the body file
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return apierror.FromResponse(resp)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

func randomItems(n, itemBytes int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n*itemBytes)
	// Small float32 values around 0 (ImageNet-normalised pixels): random
	// mantissa bytes with a fixed sign/exponent byte.
	for i := 0; i+3 < len(b); i += 4 {
		b[i], b[i+1], b[i+2] = byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())
		b[i+3] = 0x3f - byte(r.IntN(2))*0x80
	}
	return b
}

func intShape(n int, shape []int64) []int {
	out := []int{n}
	for _, d := range shape[1:] {
		out = append(out, int(d))
	}
	return out
}

func contains(v []int, x int) bool {
	for _, y := range v {
		if y == x {
			return true
		}
	}
	return false
}

// direct calls the model's Embed (batcher and normalisation, no HTTP) from
// callers goroutines for dur and returns images per second.
func direct(ctx context.Context, m *registry.Model, t tensorv1.Tensor, callers int, dur time.Duration) (float64, error) {
	var images atomic.Int64
	errc := make(chan error, callers)
	start := time.Now()
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < dur {
				if _, err := m.Embed(ctx, t.Data, t.Shape[0]); err != nil {
					errc <- err
					return
				}
				images.Add(int64(t.Shape[0]))
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return 0, err
	}
	return float64(images.Load()) / time.Since(start).Seconds(), nil
}

// startCPU starts measuring this process's CPU time (every thread, ONNX
// Runtime's included); the returned func gives the cores busy on average
// since, which tells a slower run that waited from one that worked more.
func startCPU() func() float64 {
	c0, t0 := processCPU(), time.Now()
	return func() float64 {
		return (processCPU() - c0).Seconds() / time.Since(t0).Seconds()
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
