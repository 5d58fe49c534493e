// Command bench-e2e measures the suite end to end: POST /v1/search uploads of
// the catalog photos through the gateway (four real processes on loopback)
// at increasing concurrency, against the same stages called in one process
// with no HTTP (preprocess, embed with its batcher, the embedded index),
// measured in the same run on the same machine.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/lookalike-dev/lookalike/shared/benchreport"
	"github.com/lookalike-dev/lookalike/shared/bodyfile"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"

	embedinproc "github.com/lookalike-dev/lookalike/embed/inproc"
	preinproc "github.com/lookalike-dev/lookalike/preprocess/inproc"
	searchinproc "github.com/lookalike-dev/lookalike/search/inproc"

	"github.com/lookalike-dev/lookalike/e2e/internal/loadgen"
	"github.com/lookalike-dev/lookalike/e2e/internal/stack"
)

// Report is what the command writes as JSON.
type Report struct {
	Machine     string           `json:"machine"`
	Images      int              `json:"images"`
	HTTP        []loadgen.Result `json:"http"`
	InProcess   []loadgen.Result `json:"in_process"`
	BestHTTP    float64          `json:"best_http_rps"`
	BestInProc  float64          `json:"best_in_process_rps"`
	Ratio       float64          `json:"ratio"`
	P99AtBestMs float64          `json:"p99_at_best_ms"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-e2e:", err)
		os.Exit(1)
	}
}

func run() error {
	concFlag := flag.String("concurrency", "1,2,4,8,16", "client concurrency levels")
	dur := flag.Duration("duration", 6*time.Second, "time per level")
	out := flag.String("out", "", "write the JSON report here")
	rounds := flag.Int("rounds", 2, "rounds; each runs every level through the gateway, then in process, and the best of each level is kept (this machine's CPU is noisy)")
	profiles := flag.String("profiles", "", "save each service's CPU profile (pprof, taken at the highest concurrency) in this folder")
	flag.Parse()
	var levels []int
	for _, f := range strings.Split(*concFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("bad concurrency %q", f)
		}
		levels = append(levels, n)
	}
	ctx := context.Background()

	tb := &stack.CmdTB{}
	defer tb.Close()
	opts := stack.Options{Extra: map[string][]string{}}
	debug := map[string]string{}
	if *profiles != "" {
		if err := os.MkdirAll(*profiles, 0o755); err != nil {
			return err
		}
		for _, svc := range stack.Services {
			debug[svc] = stack.FreeAddr(tb)
			opts.Extra[svc] = []string{strings.ToUpper(svc) + "_DEBUG_ADDR=" + debug[svc]}
		}
	}
	s := stack.New(tb, opts)
	s.Start(tb)
	c := stack.NewClient(s.Gateway(), s.AdminKey)
	catDir := filepath.Dir(s.Env.CatalogJL)
	products, imgs, err := stack.LoadCatalog(s.Env.CatalogJL)
	if err != nil {
		return err
	}
	if err := c.IndexAll(catDir, products, 4); err != nil {
		return fmt.Errorf("indexing through the gateway: %w", err)
	}
	rep := Report{Machine: machine(), Images: len(imgs)}
	// Each upload's multipart body is built once into a file in memory and
	// sent with sendfile(2), as a load tool replays a body file: the
	// generator shares the cores with the services, and a real client on
	// another machine costs them nothing (nor does the in-process
	// reference's input).
	bodies, cts := make([]bodyfile.File, len(imgs)), make([]string, len(imgs))
	for i, img := range imgs {
		b, ct := stack.Multipart(nil, map[string][]byte{"image": img})
		if bodies[i], err = bodyfile.Write(b.Bytes()); err != nil {
			return err
		}
		defer bodies[i].Remove()
		cts[i] = ct
	}
	// Enough idle connections for the highest concurrency (the default
	// keeps two, and the rest would reconnect on every request).
	c.HTTP = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 60 * time.Second}

	pre, err := preinproc.New()
	if err != nil {
		return err
	}
	emb, err := embedinproc.Open(ctx, embedinproc.Options{SpecDir: filepath.Join(s.Env.Repo, "embed", "models"),
		ModelDir: s.Env.ModelDir, ORTLib: s.Env.ORTLib, Models: []string{"mobilenetv2-int8-v1"}})
	if err != nil {
		return err
	}
	defer emb.Close(ctx)
	var spec embedv1.ModelSpec
	for _, m := range emb.Models() {
		if m.Default {
			spec = m
		}
	}
	dir, err := os.MkdirTemp("", "bench-e2e-index-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ix, err := searchinproc.Open(dir)
	if err != nil {
		return err
	}
	defer ix.Close()
	if _, err := ix.CreateCollection(ctx, searchv1.CreateCollectionRequest{Catalog: "products", Model: spec.ID, Dim: spec.Dim, MakeAlias: true}); err != nil {
		return err
	}
	embedOne := func(ctx context.Context, img []byte) (string, []float32, error) {
		t, err := pre.Process(ctx, img, spec.Preprocess)
		if err != nil {
			return "", nil, err
		}
		id, rows, err := emb.Embed(ctx, t, spec.ID)
		if err != nil {
			return "", nil, err
		}
		return id, rows[0], nil
	}
	for i, p := range products {
		id, v, err := embedOne(ctx, imgs[i])
		if err != nil {
			return err
		}
		if _, err := ix.Upsert(ctx, "products", searchv1.UpsertRequest{Model: id, Dim: len(v), Points: []searchv1.Point{{SKU: p.SKU, Vector: v, Payload: searchv1.Payload{"title": p.Title}}}}); err != nil {
			return err
		}
	}
	searchHTTP := func(ctx context.Context, i int) error {
		res, err := c.SearchFile(ctx, bodies[i%len(bodies)], cts[i%len(cts)], "?top_k=10")
		if err == nil && len(res.Results) == 0 {
			err = fmt.Errorf("no results")
		}
		return err
	}
	searchInProc := func(ctx context.Context, i int) error {
		id, v, err := embedOne(ctx, imgs[i%len(imgs)])
		if err != nil {
			return err
		}
		res, err := ix.Search(ctx, "products", searchv1.SearchRequest{Model: id, Dim: len(v), Vector: v, TopK: 10})
		if err == nil && len(res.Results) == 0 {
			err = fmt.Errorf("no results")
		}
		return err
	}
	// Both pipelines are up; the services sit idle (no CPU) while the
	// in-process reference runs. Rounds alternate so that a slow spell of
	// the machine does not land on one side only.
	httpRes := make([]loadgen.Result, len(levels))
	inprocRes := make([]loadgen.Result, len(levels))
	keep := func(best []loadgen.Result, i int, r loadgen.Result) {
		if r.Errors == 0 && r.Throughput > best[i].Throughput {
			best[i] = r
		}
	}
	for round := 1; round <= max(*rounds, 1); round++ {
		fmt.Fprintf(os.Stderr, "round %d: HTTP through the gateway (%d photos):\n", round, len(imgs))
		for li, n := range levels {
			if round == 1 && li == len(levels)-1 && len(debug) > 0 {
				go saveProfiles(debug, *profiles, *dur)
			}
			r := loadgen.Run(ctx, n, *dur, 0, searchHTTP)
			fmt.Fprintf(os.Stderr, "  c=%-3d %7.1f req/s  p50 %6.1f ms  p95 %6.1f ms  p99 %6.1f ms  errors %d\n", n, r.Throughput, r.P50ms, r.P95ms, r.P99ms, r.Errors)
			keep(httpRes, li, r)
		}
		fmt.Fprintf(os.Stderr, "round %d: in process, no HTTP (same stages):\n", round)
		for li, n := range levels {
			r := loadgen.Run(ctx, n, *dur, 0, searchInProc)
			fmt.Fprintf(os.Stderr, "  c=%-3d %7.1f req/s  p50 %6.1f ms  p95 %6.1f ms  p99 %6.1f ms  errors %d\n", n, r.Throughput, r.P50ms, r.P95ms, r.P99ms, r.Errors)
			keep(inprocRes, li, r)
		}
	}
	rep.HTTP, rep.InProcess = httpRes, inprocRes
	for _, r := range rep.HTTP {
		if r.Throughput > rep.BestHTTP {
			rep.BestHTTP, rep.P99AtBestMs = r.Throughput, r.P99ms
		}
	}
	for _, r := range rep.InProcess {
		rep.BestInProc = max(rep.BestInProc, r.Throughput)
	}
	if rep.BestInProc > 0 {
		rep.Ratio = rep.BestHTTP / rep.BestInProc
	}
	fmt.Printf("end to end: %.1f req/s through the gateway vs %.1f req/s in process at saturation: ratio %.2f (goal >= 0.85), p99 %.0f ms\n",
		rep.BestHTTP, rep.BestInProc, rep.Ratio, rep.P99AtBestMs)
	benchreport.Print(os.Stdout, benchreport.Stage{Stage: "end-to-end", Rows: []benchreport.Row{{
		Name: fmt.Sprintf("POST /v1/search through the gateway, 4 processes (p99 %.0f ms)", rep.P99AtBestMs), Figure: rep.BestHTTP, Unit: "req/s",
		Reference: "same stages in one process", ReferenceFigure: rep.BestInProc, Ratio: rep.Ratio, Goal: 0.85}}})
	if *out != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*out, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func machine() string {
	h, _ := os.Hostname()
	return fmt.Sprintf("%s, %d CPUs", h, runtime.NumCPU())
}

// saveProfiles takes a CPU profile of each service while the load runs.
func saveProfiles(debug map[string]string, dir string, d time.Duration) {
	secs := max(int(d.Seconds())-1, 1)
	for svc, addr := range debug {
		go func() {
			resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs))
			if err != nil {
				fmt.Fprintf(os.Stderr, "profile of %s: %v\n", svc, err)
				return
			}
			defer resp.Body.Close()
			f, err := os.Create(filepath.Join(dir, svc+".pprof"))
			if err != nil {
				return
			}
			defer f.Close()
			_, _ = io.Copy(f, resp.Body)
			fmt.Fprintf(os.Stderr, "saved %s\n", f.Name())
		}()
	}
}
