// Command bench-e2e measures the suite end to end: POST /v1/search uploads of
// the catalog photos through the gateway (four real processes on loopback)
// at increasing concurrency, against the same stages called in one process
// with no HTTP (preprocess, embed with its batcher, the embedded index),
// measured in the same run on the same machine.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lookalike-dev/lookalike/shared/benchreport"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
	"github.com/lookalike-dev/lookalike/shared/sysmon"

	embedinproc "github.com/lookalike-dev/lookalike/embed/inproc"
	preinproc "github.com/lookalike-dev/lookalike/preprocess/inproc"
	searchinproc "github.com/lookalike-dev/lookalike/search/inproc"

	"github.com/lookalike-dev/lookalike/e2e/internal/loadgen"
	"github.com/lookalike-dev/lookalike/e2e/internal/paired"
	"github.com/lookalike-dev/lookalike/e2e/internal/replay"
	"github.com/lookalike-dev/lookalike/e2e/internal/stack"
)

// Report is what the command writes as JSON.
type Report struct {
	Machine   string  `json:"machine"`
	Images    int     `json:"images"`
	HTTP      []Level `json:"http"`
	InProcess []Level `json:"in_process"`
	// Saturation is the comparison the ratio comes from: both sides at the
	// saturation point, in interleaved windows.
	Saturation Saturation `json:"saturation"`
}

// Saturation compares the two sides at one concurrency over paired,
// interleaved windows: each side's windows pooled, and the pairs' ratios.
type Saturation struct {
	Concurrency int            `json:"concurrency"`
	HTTP        Level          `json:"http"`
	InProcess   Level          `json:"in_process"`
	Paired      paired.Summary `json:"paired"`
}

// Level is one concurrency level's result with the CPU each process spent
// per answered request: where the time goes.
type Level struct {
	loadgen.Result
	// CPUms is CPU milliseconds per answered request by process: the four
	// services and "driver" (this process: the load generator, or the whole
	// pipeline in process).
	CPUms map[string]float64 `json:"cpu_ms_per_request,omitempty"`
}

// cpuMeter samples the CPU time of named processes.
type cpuMeter map[string]func() (time.Duration, error)

func (m cpuMeter) sample() map[string]time.Duration {
	out := make(map[string]time.Duration, len(m))
	for name, f := range m {
		if d, err := f(); err == nil {
			out[name] = d
		}
	}
	return out
}

// measure runs one level and charges each process's CPU to its requests.
func (m cpuMeter) measure(run func() loadgen.Result) Level {
	before := m.sample()
	r := run()
	after := m.sample()
	l := Level{Result: r, CPUms: map[string]float64{}}
	answered := float64(r.Requests - r.Errors)
	for name, b := range before {
		if a, ok := after[name]; ok && answered > 0 {
			l.CPUms[name] = float64((a - b).Microseconds()) / 1000 / answered
		}
	}
	return l
}

// results are the load results of ls.
func results(ls []Level) []loadgen.Result {
	rs := make([]loadgen.Result, len(ls))
	for i, l := range ls {
		rs[i] = l.Result
	}
	return rs
}

// windows are ls as paired windows: answered requests over seconds.
func windows(ls []Level) []paired.Window {
	ws := make([]paired.Window, len(ls))
	for i, l := range ls {
		ws[i] = paired.Window{Answered: l.Requests - l.Errors, Seconds: l.Seconds}
	}
	return ws
}

// mergeLevels pools windows at one concurrency: their requests and
// latencies (loadgen.Merge) and each process's CPU per answered request,
// weighted by the requests each window answered.
func mergeLevels(ls []Level) Level {
	cpu := map[string]float64{}
	answered := 0.0
	for _, l := range ls {
		n := float64(l.Requests - l.Errors)
		answered += n
		for name, v := range l.CPUms {
			cpu[name] += v * n
		}
	}
	for name := range cpu {
		cpu[name] /= max(answered, 1)
	}
	return Level{Result: loadgen.Merge(results(ls)...), CPUms: cpu}
}

// cpuLine formats a level's CPU per request, services first.
func cpuLine(l Level) string {
	var parts []string
	total := 0.0
	for _, name := range append(append([]string{}, stack.Services...), "driver") {
		if v, ok := l.CPUms[name]; ok {
			parts = append(parts, fmt.Sprintf("%s %.1f", name, v))
			total += v
		}
	}
	return fmt.Sprintf("CPU ms/request: %s = %.1f", strings.Join(parts, ", "), total)
}

func main() {
	// The reference pipeline runs in this process: it gets the Go runtime
	// setting the services run with (the stack gives it to them), so both
	// sides pay the same runtime. GODEBUG is read at start, hence the re-exec.
	if !sysmon.On(os.Getenv("GODEBUG")) {
		if err := reexecWith("GODEBUG", sysmon.With(os.Getenv("GODEBUG"))); err != nil {
			fmt.Fprintln(os.Stderr, "bench-e2e:", err)
			os.Exit(1)
		}
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-e2e:", err)
		os.Exit(1)
	}
}

func run() error {
	concFlag := flag.String("concurrency", "1,2,4,8,16", "client concurrency levels")
	dur := flag.Duration("duration", 6*time.Second, "time per level")
	out := flag.String("out", "", "write the JSON report here")
	svcEnv := flag.String("service-env", "", "extra environment per service, e.g. \"gateway:GOMAXPROCS=1,search:GOMAXPROCS=1\"")
	rounds := flag.Int("rounds", 1, "rounds of the curve; each runs every level through the gateway and in process, the two alternating level by level (the best of each level is kept)")
	pairs := flag.Int("pairs", 20, "window pairs at the saturation point, each side in turn (the ratio comes from these)")
	window := flag.Duration("window", 6*time.Second, "length of one side's window at the saturation point")
	profiles := flag.String("profiles", "", "save each service's CPU profile (pprof, taken at the highest concurrency) in this folder")
	flag.Parse()
	if *pairs < 1 || *window <= 0 {
		return fmt.Errorf("-pairs must be at least 1 and -window positive (the ratio comes from them), got %d and %s", *pairs, *window)
	}
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
	for _, kv := range strings.Split(*svcEnv, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		svc, v, ok := strings.Cut(kv, ":")
		if !ok || !strings.Contains(v, "=") {
			return fmt.Errorf("bad -service-env entry %q (want service:NAME=value)", kv)
		}
		opts.Extra[svc] = append(opts.Extra[svc], v)
	}
	if *profiles != "" {
		if err := os.MkdirAll(*profiles, 0o755); err != nil {
			return err
		}
		for _, svc := range stack.Services {
			opts.Extra[svc] = append(opts.Extra[svc], strings.ToUpper(svc)+"_PPROF=true")
		}
	}
	s := stack.New(tb, opts)
	if *profiles != "" {
		for _, svc := range stack.Services {
			if p, ok := s.Procs[svc]; ok {
				debug[svc] = p.MetricsAddr // pprof is on the internal listener
			}
		}
	}
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
	// Each upload is built once, request line, headers and multipart body,
	// into a file in memory, and replayed over kept-alive connections with
	// sendfile(2) and no JSON decoding of the answer (package replay), as a
	// lean load tool does: the generator shares the cores with the services,
	// and a real client on another machine costs them nothing (nor does the
	// in-process reference's input).
	gw, err := url.Parse(s.Gateway())
	if err != nil {
		return err
	}
	uploads := make([]replay.Request, len(imgs))
	for i, img := range imgs {
		b, ct := stack.Multipart(nil, map[string][]byte{"image": img})
		if uploads[i], err = replay.NewPost(gw.Host, "/v1/search?top_k=10", ct, b.Bytes()); err != nil {
			return err
		}
		defer uploads[i].Remove()
	}
	maxConc := slices.Max(levels)
	clients := make(chan *replay.Client, maxConc)
	for range maxConc {
		rc := replay.NewClient(gw.Host, 60*time.Second)
		defer rc.Close()
		clients <- rc
	}

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
		t, err := pre.ProcessQuery(ctx, img, spec.WireSpec()) // what the gateway asks for
		if err != nil {
			return "", nil, err
		}
		id, rows, err := emb.Embed(ctx, t, spec.ID)
		if err != nil {
			return "", nil, err
		}
		pre.Recycle(t) // embedded: the batcher is done with it, as the services recycle theirs
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
	searchHTTP := func(_ context.Context, i int) error {
		rc := <-clients
		defer func() { clients <- rc }()
		st, body, err := rc.Do(uploads[i%len(uploads)])
		switch {
		case err != nil:
			return err
		case st != http.StatusOK:
			return fmt.Errorf("search: %d %.200s", st, body)
		case !bytes.Contains(body, []byte(`"results":[{`)):
			return fmt.Errorf("search: no results: %.200s", body)
		}
		return nil
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
	// in-process reference runs.
	httpRes := make([]Level, len(levels))
	inprocRes := make([]Level, len(levels))
	keep := func(best []Level, i int, r Level) {
		if r.Errors == 0 && r.Throughput > best[i].Throughput {
			best[i] = r
		}
	}
	// CPU per request by process: the services and this process (the load
	// generator; in the reference, the whole pipeline).
	httpCPU, inprocCPU := cpuMeter{"driver": stack.SelfCPUTime}, cpuMeter{"driver": stack.SelfCPUTime}
	for _, svc := range stack.Services {
		httpCPU[svc] = s.Procs[svc].CPUTime
	}
	// The two sides alternate level by level, in turn first, so that a slow
	// spell of this machine (they last tens of seconds) lands on both.
	type side struct {
		name string
		cpu  cpuMeter
		op   func(context.Context, int) error
		best []Level
	}
	sides := []side{
		{"HTTP   ", httpCPU, searchHTTP, httpRes},
		{"in-proc", inprocCPU, searchInProc, inprocRes},
	}
	fmt.Fprintf(os.Stderr, "%d photos; HTTP: through the gateway, 4 processes; in-proc: the same stages in this process, no HTTP; both with GODEBUG=%s\n", len(imgs), os.Getenv("GODEBUG"))
	for round := 1; round <= max(*rounds, 1); round++ {
		fmt.Fprintf(os.Stderr, "round %d:\n", round)
		for li, n := range levels {
			for k := range sides {
				sd := sides[(k+round+1)%2] // odd rounds HTTP first, even rounds in-proc first
				if round == 1 && li == len(levels)-1 && len(debug) > 0 && sd.name == sides[0].name {
					go saveProfiles(debug, *profiles, *dur)
				}
				r := sd.cpu.measure(func() loadgen.Result { return loadgen.Run(ctx, n, *dur, 0, sd.op) })
				fmt.Fprintf(os.Stderr, "  c=%-3d %s %7.1f req/s  p50 %6.1f ms  p95 %6.1f ms  p99 %6.1f ms  errors %d  %s\n", n, sd.name, r.Throughput, r.P50ms, r.P95ms, r.P99ms, r.Errors, cpuLine(r))
				keep(sd.best, li, r)
			}
		}
	}
	rep.HTTP, rep.InProcess = httpRes, inprocRes

	// The ratio: this VM's speed drifts by 20-30% over tens of seconds, more
	// than the gap measured, so the two sides are compared at the saturation
	// point (the first level where both reach 95% of their best) in short
	// windows taken in turn, each pair seeing the same drift (package paired).
	knee := max(loadgen.Knee(results(httpRes), 0.95), loadgen.Knee(results(inprocRes), 0.95))
	if knee < 0 {
		return fmt.Errorf("no level answered a request: %s / %s", httpRes[0].FirstError, inprocRes[0].FirstError)
	}
	sat := Saturation{Concurrency: levels[knee]}
	fmt.Fprintf(os.Stderr, "saturation point: c=%d; %d pairs of %s windows, each side in turn:\n", sat.Concurrency, *pairs, *window)
	levelsBySide := make([][]Level, len(sides))
	for p := 0; p < *pairs; p++ {
		var line []string
		for k := range sides {
			si := (k + p) % 2 // even pairs HTTP first, odd pairs in-proc first
			sd := sides[si]
			r := sd.cpu.measure(func() loadgen.Result { return loadgen.Run(ctx, sat.Concurrency, *window, 0, sd.op) })
			if r.Errors > 0 {
				fmt.Fprintf(os.Stderr, "  %s: %d errors, first: %s\n", strings.TrimSpace(sd.name), r.Errors, r.FirstError)
			}
			levelsBySide[si] = append(levelsBySide[si], r)
			line = append(line, fmt.Sprintf("%s %.1f", strings.TrimSpace(sd.name), r.Throughput))
		}
		fmt.Fprintf(os.Stderr, "  pair %2d: %s req/s\n", p+1, strings.Join(line, ", "))
	}
	sat.HTTP, sat.InProcess = mergeLevels(levelsBySide[0]), mergeLevels(levelsBySide[1])
	if sat.Paired, err = paired.Compare(windows(levelsBySide[0]), windows(levelsBySide[1])); err != nil {
		return err
	}
	rep.Saturation = sat
	for k, l := range []Level{sat.HTTP, sat.InProcess} {
		fmt.Fprintf(os.Stderr, "  c=%-3d %s %7.1f req/s  p50 %6.1f ms  p95 %6.1f ms  p99 %6.1f ms  errors %d  %s (all windows)\n",
			sat.Concurrency, sides[k].name, l.Throughput, l.P50ms, l.P95ms, l.P99ms, l.Errors, cpuLine(l))
	}
	ps := sat.Paired
	fmt.Printf("end to end at saturation (c=%d, %d interleaved pairs): %.1f req/s through the gateway vs %.1f req/s in process: ratio %.2f (goal >= 0.85); pairs' ratios median %.2f, quartiles %.2f-%.2f, range %.2f-%.2f; p99 %.0f ms\n",
		sat.Concurrency, ps.Pairs, sat.HTTP.Throughput, sat.InProcess.Throughput, ps.Ratio, ps.Median, ps.Q1, ps.Q3, ps.Min, ps.Max, sat.HTTP.P99ms)
	benchreport.Print(os.Stdout, benchreport.Stage{Stage: "end-to-end", Rows: []benchreport.Row{{
		Name: fmt.Sprintf("POST /v1/search through the gateway, 4 processes, c=%d (p99 %.0f ms; %d interleaved pairs, their ratios %.2f-%.2f, quartiles %.2f-%.2f)",
			sat.Concurrency, sat.HTTP.P99ms, ps.Pairs, ps.Min, ps.Max, ps.Q1, ps.Q3),
		Figure: sat.HTTP.Throughput, Unit: "req/s",
		Reference: "same stages in one process", ReferenceFigure: sat.InProcess.Throughput, Ratio: ps.Ratio, Goal: 0.85}}})
	if *out != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*out, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// reexecWith replaces this process with itself, the environment variable
// name set to value.
func reexecWith(name, value string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this executable to restart it with %s=%s: %w", name, value, err)
	}
	env := []string{name + "=" + value}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, name+"=") {
			env = append(env, kv)
		}
	}
	if err := syscall.Exec(exe, os.Args, env); err != nil {
		return fmt.Errorf("restarting with %s=%s: %w", name, value, err)
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
