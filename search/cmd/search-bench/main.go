// Command search-bench measures the embedded index on generated clustered
// vectors: HNSW build time, resident memory, queries per second on one core
// and recall@k against an exact scan run in the same process. The exact scan
// (vek dot products) is the reference: every ratio printed is against it.
package main

import (
	"flag"
	"fmt"
	"github.com/lookalike-dev/lookalike/shared/benchreport"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lookalike-dev/lookalike/search/internal/flat"
	"github.com/lookalike-dev/lookalike/search/internal/hnsw"
)

func main() {
	n := flag.Int("n", 100000, "vectors indexed (1000000 for the 1M goal)")
	dim := flag.Int("dim", 1280, "dimensions")
	clusters := flag.Int("clusters", 1000, "clusters in the generated data")
	spread := flag.Float64("spread", 0.15, "noise around a cluster centre (smaller is tighter, harder)")
	queries := flag.Int("queries", 500, "queries (drawn from the same clusters, not indexed)")
	k := flag.Int("k", 10, "recall@k")
	m := flag.Int("m", 16, "HNSW M")
	efc := flag.Int("efc", 200, "HNSW ef_construction")
	efs := flag.String("ef", "64,128,256", "query ef values to measure (256 is the service default)")
	threads := flag.Int("threads", runtime.GOMAXPROCS(0), "build threads")
	graph := flag.String("graph", "", "graph file: loaded when present (same flags, same generated data), else built and saved there")
	flag.Parse()
	if err := run(*n, *dim, *clusters, *spread, *queries, *k, *m, *efc, *efs, *threads, *graph); err != nil {
		fmt.Fprintln(os.Stderr, "search-bench:", err)
		os.Exit(1)
	}
}

func rssMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// generate makes non-negative, L2-normalised vectors around random centres.
func generate(r *rand.Rand, n, dim int, centres [][]float32, spread float64) []float32 {
	out := make([]float32, n*dim)
	for i := range n {
		c := centres[r.IntN(len(centres))]
		v := out[i*dim : (i+1)*dim]
		for j := range v {
			x := float64(c[j]) + spread*r.NormFloat64()
			v[j] = float32(max(x, 0))
		}
		if !flat.Normalize(v) {
			v[0] = 1
		}
	}
	return out
}

// threadCPU is the CPU time of the calling OS thread (the caller locks it),
// so QPS per core is not skewed by other processes sharing the machine.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func run(n, dim, nClusters int, spread float64, nq, k, m, efc int, efList string, threads int, graphPath string) error {
	if !hnsw.Available {
		return fmt.Errorf("hnswlib is not compiled in (needs cgo and libhnswlib-dev: make setup-search)")
	}
	fmt.Printf("search-bench: n=%d dim=%d clusters=%d spread=%.2f queries=%d k=%d M=%d efC=%d build threads=%d GOMAXPROCS=%d\n",
		n, dim, nClusters, spread, nq, k, m, efc, threads, runtime.GOMAXPROCS(0))
	r := rand.New(rand.NewPCG(42, 1))
	centres := make([][]float32, nClusters)
	for i := range centres {
		centres[i] = make([]float32, dim)
		for j := range centres[i] {
			centres[i][j] = r.Float32()
		}
	}
	t0 := time.Now()
	data := generate(r, n, dim, centres, spread)
	qs := generate(r, nq, dim, centres, spread)
	runtime.GC()
	rssData := rssMiB()
	fmt.Printf("generated in %.1fs; RSS with raw vectors %.0f MiB (%.0f MiB of float32 data)\n",
		time.Since(t0).Seconds(), rssData, float64(len(data)*4)/(1<<20))

	// Exact reference, one core.
	runtime.LockOSThread()
	vec := func(s int) []float32 { return data[s*dim : (s+1)*dim] }
	truth := make([][]int, nq)
	t0 = time.Now()
	c0 := threadCPU()
	for i := range nq {
		res := flat.Scan(qs[i*dim:(i+1)*dim], n, k, vec)
		truth[i] = make([]int, len(res))
		for j, x := range res {
			truth[i][j] = x.Slot
		}
	}
	exactQPS := float64(nq) / time.Since(t0).Seconds()
	exactCPUQPS := float64(nq) / (threadCPU() - c0).Seconds()
	fmt.Printf("exact scan (vek, 1 thread): %.1f QPS wall, %.1f QPS per CPU-second; recall 1.0 by definition\n", exactQPS, exactCPUQPS)
	runtime.UnlockOSThread()

	// Build (or load a graph built by an earlier run with the same flags).
	if graphPath != "" {
		if _, err := os.Stat(graphPath); err == nil {
			t0 = time.Now()
			ix, err := hnsw.Load(graphPath, dim, 64)
			if err != nil {
				return err
			}
			defer ix.Close()
			if ix.Len() != n {
				return fmt.Errorf("graph %s holds %d points, not %d", graphPath, ix.Len(), n)
			}
			runtime.GC()
			fmt.Printf("graph loaded from %s in %.1fs (build time: see the run that built it); RSS %.0f MiB, graph adds %.0f MiB = %.0f B/vector\n",
				graphPath, time.Since(t0).Seconds(), rssMiB(), rssMiB()-rssData, (rssMiB()-rssData)*(1<<20)/float64(n))
			return measure(ix, qs, truth, nq, dim, k, efList, exactQPS, exactCPUQPS)
		}
	}
	ix, err := hnsw.New(dim, n, hnsw.Params{M: m, EfConstruction: efc, Ef: 64, Seed: 100})
	if err != nil {
		return err
	}
	defer ix.Close()
	labels := make([]uint64, n)
	for i := range labels {
		labels[i] = uint64(i)
	}
	t0 = time.Now()
	const step = 10000
	for s := 0; s < n; s += step {
		e := min(s+step, n)
		if err := ix.Add(data[s*dim:e*dim], labels[s:e], threads); err != nil {
			return err
		}
		if e%100000 == 0 || e == n {
			fmt.Printf("  built %d/%d in %.0fs\n", e, n, time.Since(t0).Seconds())
		}
	}
	build := time.Since(t0)
	runtime.GC()
	rssIndex := rssMiB()
	perVec := (rssIndex - rssData) * (1 << 20) / float64(n)
	fmt.Printf("build: %.1fs with %d threads (%.0f vectors/s)\n", build.Seconds(), threads, float64(n)/build.Seconds())
	fmt.Printf("memory: RSS %.0f MiB; graph adds %.0f MiB = %.0f B/vector; embedded store per 1M vectors: graph %.2f GiB + Go-side vectors %.2f GiB = %.2f GiB\n",
		rssIndex, rssIndex-rssData, perVec, perVec*1e6/(1<<30), float64(4*dim)*1e6/(1<<30), (perVec+float64(4*dim))*1e6/(1<<30))

	// Persistence.
	dir, err := os.MkdirTemp("", "search-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	t0 = time.Now()
	if err := ix.Save(filepath.Join(dir, "g.bin")); err != nil {
		return err
	}
	save := time.Since(t0)
	st, _ := os.Stat(filepath.Join(dir, "g.bin"))
	t0 = time.Now()
	ix2, err := hnsw.Load(filepath.Join(dir, "g.bin"), dim, 64)
	if err != nil {
		return err
	}
	load := time.Since(t0)
	ix2.Close()
	fmt.Printf("graph file %.0f MiB: save %.1fs, load %.1fs\n", float64(st.Size())/(1<<20), save.Seconds(), load.Seconds())
	if graphPath != "" {
		if err := os.Rename(filepath.Join(dir, "g.bin"), graphPath); err != nil {
			if err := ix.Save(graphPath); err != nil {
				return err
			}
		}
		fmt.Printf("graph kept at %s (pass -graph again to skip the build)\n", graphPath)
	}
	if math.IsNaN(perVec) {
		return fmt.Errorf("no RSS reading")
	}
	return measure(ix, qs, truth, nq, dim, k, efList, exactQPS, exactCPUQPS)
}

// measure runs the queries on one locked thread for each ef.
func measure(ix *hnsw.Index, qs []float32, truth [][]int, nq, dim, k int, efList string, exactQPS, exactCPUQPS float64) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// One unmeasured pass pages the graph in and warms the caches; without
	// it the first ef measured pays for that.
	for i := range nq {
		if _, _, err := ix.Search(qs[i*dim:(i+1)*dim], k); err != nil {
			return err
		}
	}
	var rows []benchreport.Row
	fmt.Printf("%-6s %10s %14s %10s %14s\n", "ef", "QPS wall", "QPS/CPU-sec", "recall@"+strconv.Itoa(k), "x exact (CPU)")
	for _, f := range strings.Split(efList, ",") {
		ef, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return fmt.Errorf("ef %q: %w", f, err)
		}
		ix.SetEf(ef)
		hit := 0
		t0 := time.Now()
		c0 := threadCPU()
		for i := range nq {
			got, _, err := ix.Search(qs[i*dim:(i+1)*dim], k)
			if err != nil {
				return err
			}
			want := map[int]bool{}
			for _, s := range truth[i] {
				want[s] = true
			}
			for _, l := range got {
				if want[int(l)] {
					hit++
				}
			}
		}
		qps := float64(nq) / time.Since(t0).Seconds()
		cpuQPS := float64(nq) / (threadCPU() - c0).Seconds()
		recall := float64(hit) / float64(nq*k)
		goal := ""
		if recall >= 0.99 && cpuQPS >= 150 {
			goal = "  (meets recall>=0.99 at >=150 QPS/core)"
		}
		fmt.Printf("%-6d %10.0f %14.0f %10.4f %14.1f%s\n", ef, qps, cpuQPS, recall, cpuQPS/exactCPUQPS, goal)
		rows = append(rows, benchreport.Row{Name: fmt.Sprintf("HNSW ef=%d, %d vectors, recall@%d %.4f", ef, ix.Len(), k, recall), Figure: cpuQPS, Unit: "QPS/core",
			Reference: "exact scan", ReferenceFigure: exactCPUQPS, Ratio: cpuQPS / exactCPUQPS})
	}
	benchreport.Print(os.Stdout, benchreport.Stage{Stage: "search", Rows: rows})
	_ = exactQPS
	return nil
}
