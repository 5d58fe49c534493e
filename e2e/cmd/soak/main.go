// Command soak runs the suite under a bounded mixed load (photo searches,
// "more like this", admin upserts, hostile inputs) for a while, samples each
// service's resident memory and goroutines, and fails when either grows
// past its bound.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/lookalike-dev/lookalike/e2e/internal/hostile"
	"github.com/lookalike-dev/lookalike/e2e/internal/loadgen"
	"github.com/lookalike-dev/lookalike/e2e/internal/stack"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

type sample struct {
	at         time.Duration
	rss, gorou map[string]float64
}

func run() error {
	dur := flag.Duration("duration", 10*time.Minute, "how long the load runs")
	every := flag.Duration("every", 15*time.Second, "sampling period")
	workers := flag.Int("workers", 4, "concurrent clients")
	rssGrowth := flag.Float64("max-rss-growth", 0.30, "largest allowed RSS growth from the first sample after warm-up (fraction)")
	gorGrowth := flag.Float64("max-goroutine-growth", 25, "largest allowed goroutine growth from the first sample after warm-up")
	flag.Parse()

	tb := &stack.CmdTB{}
	defer tb.Close()
	s := stack.New(tb, stack.Options{})
	s.Start(tb)
	c := stack.NewClient(s.Gateway(), s.AdminKey)
	catDir := filepath.Dir(s.Env.CatalogJL)
	products, imgs, err := stack.LoadCatalog(s.Env.CatalogJL)
	if err != nil {
		return err
	}
	if err := c.IndexAll(catDir, products, 4); err != nil {
		return err
	}
	bad, err := hostile.Corpus(filepath.Join(s.Env.Repo, "e2e", "testdata", "seeds"), filepath.Join(catDir, "bad"))
	if err != nil {
		return err
	}

	var mu sync.Mutex
	var samples []sample
	start := time.Now()
	take := func() {
		sm := sample{at: time.Since(start).Round(time.Second), rss: map[string]float64{}, gorou: map[string]float64{}}
		for name, p := range s.Procs {
			sm.rss[name], _ = c.Metric(p.MetricsURL(), "process_resident_memory_bytes")
			sm.gorou[name], _ = c.Metric(p.MetricsURL(), "go_goroutines")
		}
		mu.Lock()
		samples = append(samples, sm)
		mu.Unlock()
		fmt.Fprintf(os.Stderr, "%6s", sm.at)
		for _, n := range stack.Services {
			fmt.Fprintf(os.Stderr, "  %s %4.0f MiB %3.0f gor", n, sm.rss[n]/(1<<20), sm.gorou[n])
		}
		fmt.Fprintln(os.Stderr)
	}
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(*every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				take()
			}
		}
	}()
	take()
	res := loadgen.Run(context.Background(), *workers, *dur, 0, func(ctx context.Context, i int) error {
		switch i % 10 {
		case 0: // more like this
			body := strings.NewReader(fmt.Sprintf(`{"sku":%q,"top_k":10}`, products[i%len(products)].SKU))
			st, b, _, err := c.Do(http.MethodPost, "/v1/search", "application/json", body, false)
			return expect(st, b, err, 200)
		case 1: // an admin upsert of a known product
			return c.IndexProduct(catDir, products[i%len(products)])
		case 2: // a hostile input: must be a 4xx or a success, never a 5xx
			h := bad[i%len(bad)]
			b, ct := stack.Multipart(nil, map[string][]byte{"image": h.Data})
			st, out, _, err := c.Do(http.MethodPost, "/v1/search", ct, b, false)
			if err != nil || st >= 500 {
				return fmt.Errorf("hostile %q: %d %s %v", h.Name, st, out, err)
			}
			return nil
		default:
			_, err := c.SearchImage(imgs[i%len(imgs)], "?top_k=10")
			return err
		}
	})
	close(stop)
	take()
	fmt.Fprintf(os.Stderr, "load: %d requests, %d failed, %.1f req/s, p99 %.0f ms\n", res.Requests, res.Errors, res.Throughput, res.P99ms)
	// Bounds: from the second sample (after warm-up) to the last.
	if len(samples) < 3 {
		return fmt.Errorf("only %d samples", len(samples))
	}
	first, last := samples[1], samples[len(samples)-1]
	var errs []string
	for _, n := range stack.Services {
		if last.rss[n] > first.rss[n]*(1+*rssGrowth)+64<<20 {
			errs = append(errs, fmt.Sprintf("%s RSS grew %.0f -> %.0f MiB", n, first.rss[n]/(1<<20), last.rss[n]/(1<<20)))
		}
		if last.gorou[n] > first.gorou[n]+*gorGrowth {
			errs = append(errs, fmt.Sprintf("%s goroutines grew %.0f -> %.0f", n, first.gorou[n], last.gorou[n]))
		}
	}
	if res.Errors > 0 {
		errs = append(errs, fmt.Sprintf("%d requests failed (first: %s)", res.Errors, res.FirstError))
	}
	if len(errs) > 0 {
		return fmt.Errorf("soak bounds broken: %s", strings.Join(errs, "; "))
	}
	fmt.Println("soak passed: memory and goroutines bounded, no failed request")
	return nil
}

func expect(st int, b []byte, err error, want int) error {
	if err != nil {
		return err
	}
	if st != want {
		return fmt.Errorf("got %d %.200s", st, b)
	}
	return nil
}
