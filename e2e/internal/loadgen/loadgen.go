// Package loadgen drives a closed-loop load at a fixed concurrency and
// reports throughput and latency percentiles.
package loadgen

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Result of one run.
type Result struct {
	Concurrency int     `json:"concurrency"`
	Requests    int     `json:"requests"`
	Errors      int     `json:"errors"`
	Seconds     float64 `json:"seconds"`
	Throughput  float64 `json:"throughput_rps"`
	P50ms       float64 `json:"p50_ms"`
	P95ms       float64 `json:"p95_ms"`
	P99ms       float64 `json:"p99_ms"`
	FirstError  string  `json:"first_error,omitempty"`
	// Latencies are the answered requests' times, sorted (for Merge).
	Latencies []time.Duration `json:"-"`
}

// Run calls op from `concurrency` workers for d (and at most maxReq
// requests when > 0). op gets a request index.
func Run(ctx context.Context, concurrency int, d time.Duration, maxReq int, op func(ctx context.Context, i int) error) Result {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	first := ""
	next := 0
	var wg sync.WaitGroup
	start := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if maxReq > 0 && i >= maxReq {
					return
				}
				t0 := time.Now()
				err := op(context.WithoutCancel(ctx), i)
				el := time.Since(t0)
				mu.Lock()
				if err != nil {
					errs++
					if first == "" {
						first = err.Error()
					}
				} else {
					lat = append(lat, el)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return summarize(Result{Concurrency: concurrency, Requests: len(lat) + errs, Errors: errs,
		Seconds: time.Since(start).Seconds(), FirstError: first, Latencies: lat})
}

// Merge pools runs at one concurrency (windows of a longer measurement)
// into one result: requests, errors and seconds add up, throughput is
// answered requests over the summed seconds, and the percentiles are those
// of all the runs' latencies together.
func Merge(rs ...Result) Result {
	var m Result
	for _, r := range rs {
		m.Concurrency = r.Concurrency
		m.Requests += r.Requests
		m.Errors += r.Errors
		m.Seconds += r.Seconds
		m.Latencies = append(m.Latencies, r.Latencies...)
		if m.FirstError == "" {
			m.FirstError = r.FirstError
		}
	}
	return summarize(m)
}

// summarize sorts r's latencies and fills in its throughput and percentiles.
func summarize(r Result) Result {
	lat := r.Latencies
	slices.Sort(lat)
	r.Throughput = 0
	if r.Seconds > 0 {
		r.Throughput = float64(len(lat)) / r.Seconds
	}
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		i := min(int(p*float64(len(lat))), len(lat)-1)
		return float64(lat[i].Microseconds()) / 1000
	}
	r.P50ms, r.P95ms, r.P99ms = pct(0.50), pct(0.95), pct(0.99)
	return r
}

// Knee is the index of the first run (runs at rising concurrency) whose
// throughput reaches frac of the best: where adding clients stops adding
// answers, the saturation point. -1 when no run answered anything.
func Knee(rs []Result, frac float64) int {
	best := 0.0
	for _, r := range rs {
		best = max(best, r.Throughput)
	}
	if best <= 0 {
		return -1
	}
	for i, r := range rs {
		if r.Throughput >= frac*best {
			return i
		}
	}
	return -1
}

// Paced is an open-loop load: request i starts at start + i/rate (rate per
// second in all) for d, from workers goroutines that take the requests in
// turn, so a slow request delays only its own worker's next ones. It
// returns how many requests were started; op's errors are op's to count.
func Paced(ctx context.Context, rate float64, workers int, d time.Duration, op func(ctx context.Context, i int)) int {
	start := time.Now()
	n := int(rate * d.Seconds())
	var wg sync.WaitGroup
	var mu sync.Mutex
	started := 0
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				at := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Until(at)):
				}
				mu.Lock()
				started++
				mu.Unlock()
				op(ctx, i)
			}
		})
	}
	wg.Wait()
	return started
}
