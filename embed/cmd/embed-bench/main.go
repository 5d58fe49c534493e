// Command embed-bench compares the embed service with a bare onnxruntime_go
// session in the same run (same model, batch and threads) and prints the two
// ratios the project tracks: service/bare at batch 32 (goal >= 0.95) and 32
// concurrent single-image clients against the best bare batch (goal >= 0.9).
package main

import (
	"context"
	"flag"
	"fmt"
	"github.com/lookalike-dev/lookalike/shared/benchreport"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/lookalike-dev/lookalike/embed/internal/benchmark"
	"github.com/lookalike-dev/lookalike/embed/internal/ortsession"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "embed-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	o := benchmark.Options{Out: os.Stdout}
	env := func(k, def string) string {
		if v := os.Getenv(k); v != "" {
			return v
		}
		return def
	}
	var sizes string
	flag.StringVar(&o.ORTLib, "ort-lib", env("ONNXRUNTIME_LIB", ".cache/onnxruntime/libonnxruntime.so.1"), "ONNX Runtime library")
	flag.StringVar(&o.SpecDir, "models-dir", "embed/models", "model spec folder")
	flag.StringVar(&o.ModelDir, "model-dir", env("MODEL_DIR", "../shared/models"), "model file folder")
	flag.StringVar(&o.Model, "model", "mobilenetv2-int8-v1", "model id")
	flag.StringVar(&o.Session.Provider, "provider", "cpu", "auto tensorrt cuda cpu")
	flag.IntVar(&o.Session.IntraOpThreads, "threads", 0, "intra-op threads (both sides; 0: the service's auto rule, 1)")
	flag.IntVar(&o.Session.InterOpThreads, "inter-threads", 1, "inter-op threads (both sides)")
	flag.BoolVar(&o.Session.Spinning, "spinning", false, "let idle ORT threads spin (both sides)")
	flag.IntVar(&o.Batch, "batch", 32, "batch compared")
	flag.IntVar(&o.Workers, "workers", 0, "concurrent inferences: the service's batcher workers and as many bare sessions at once (0: the service's auto rule, GOMAXPROCS/threads)")
	flag.IntVar(&o.BatchClients, "batch-clients", 0, "concurrent clients sending batch requests (0: workers+2)")
	flag.IntVar(&o.Clients, "clients", 32, "concurrent single-image clients")
	flag.StringVar(&sizes, "bare-sizes", "1,8,32", "bare batch sizes searched for the best throughput")
	flag.DurationVar(&o.Duration, "duration", 4*time.Second, "time per measurement")
	flag.IntVar(&o.Rounds, "rounds", 3, "rounds alternating bare and service; the best of each is kept (CPU noise)")
	flag.DurationVar(&o.MaxDelay, "max-delay", 2*time.Millisecond, "service batching delay")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run here")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("creating the CPU profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("starting the CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-bare-sizes %q: %q is not a positive number", sizes, s)
		}
		o.BareSizes = append(o.BareSizes, n)
	}
	if err := ortsession.ValidateProvider(o.Session.Provider); err != nil {
		return err
	}
	intra, workers := ortsession.AutoThreads(o.Session.IntraOpThreads, runtime.GOMAXPROCS(0))
	o.Session.IntraOpThreads = intra
	if o.Workers <= 0 {
		o.Workers = workers
	}
	fmt.Printf("model %s, provider %s, intra-op threads %d, inter-op %d, workers %d, %s per measurement, GOMAXPROCS %d\n",
		o.Model, o.Session.Provider, o.Session.IntraOpThreads, o.Session.InterOpThreads, o.Workers, o.Duration, runtime.GOMAXPROCS(0))
	rep, err := benchmark.Run(ctx, o)
	if err != nil {
		return err
	}
	fmt.Printf("best of %d rounds: bare batch %d %.1f images/s, best bare %.1f (batch %d), service batch %d %.1f, service %d x 1 %.1f (mean batch %.1f)\n", o.Rounds, o.Batch, rep.Bare[o.Batch], rep.BestBare, rep.BestBareBatch, o.Batch, rep.ServiceBatch, o.Clients, rep.ServiceSingle, rep.SingleBatches)
	fmt.Printf("batcher without HTTP at batch %d: %.1f images/s, ratio to bare %.3f\n", o.Batch, rep.ServiceBatchNoHTTP, rep.ServiceBatchNoHTTP/rep.Bare[o.Batch])
	fmt.Printf("provider used: %s\n", rep.Provider)
	fmt.Printf("RATIO service/bare at batch %d: %.3f (goal >= 0.95)\n", o.Batch, rep.RatioBatch(o.Batch))
	fmt.Printf("RATIO %d single-image clients / best bare (batch %d): %.3f (goal >= 0.90)\n", o.Clients, rep.BestBareBatch, rep.RatioSingle())
	benchreport.Print(os.Stdout, benchreport.Stage{Stage: "embed", Rows: []benchreport.Row{
		{Name: fmt.Sprintf("service over HTTP, batch %d", o.Batch), Figure: rep.ServiceBatch, Unit: "img/s", Reference: fmt.Sprintf("bare ORT batch %d", o.Batch), ReferenceFigure: rep.Bare[o.Batch], Ratio: rep.RatioBatch(o.Batch), Goal: 0.95},
		{Name: fmt.Sprintf("service, %d single-image clients", o.Clients), Figure: rep.ServiceSingle, Unit: "img/s", Reference: fmt.Sprintf("best bare ORT (batch %d)", rep.BestBareBatch), ReferenceFigure: rep.BestBare, Ratio: rep.RatioSingle(), Goal: 0.9},
		{Name: fmt.Sprintf("batcher without HTTP, batch %d", o.Batch), Figure: rep.ServiceBatchNoHTTP, Unit: "img/s", Reference: fmt.Sprintf("bare ORT batch %d", o.Batch), ReferenceFigure: rep.Bare[o.Batch], Ratio: rep.ServiceBatchNoHTTP / rep.Bare[o.Batch]},
	}})
	return nil
}
