package loadgen

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name      string
		conc, max int
		failEvery int
		wantReq   int
		wantErrs  int
	}{
		{"bounded by count", 4, 40, 0, 40, 0},
		{"errors counted", 2, 10, 5, 10, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Run(context.Background(), tc.conc, 10*time.Second, tc.max, func(ctx context.Context, i int) error {
				time.Sleep(time.Millisecond)
				if tc.failEvery > 0 && i%tc.failEvery == 0 {
					return errors.New("boom")
				}
				return nil
			})
			if r.Requests != tc.wantReq || r.Errors != tc.wantErrs {
				t.Fatalf("got %+v", r)
			}
			if r.P50ms < 1 || r.P99ms < r.P50ms || r.Throughput <= 0 {
				t.Fatalf("bad stats %+v", r)
			}
		})
	}
}

func TestMerge(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	a := summarize(Result{Concurrency: 8, Requests: 3, Seconds: 1, Latencies: ms(30, 10, 20)})
	b := summarize(Result{Concurrency: 8, Requests: 3, Errors: 1, Seconds: 3, FirstError: "boom", Latencies: ms(100, 40)})
	tests := []struct {
		name                      string
		in                        []Result
		wantReq, wantErr          int
		wantRPS, wantP50, wantP99 float64
	}{
		{"one run is itself", []Result{a}, 3, 0, 3, 20, 30},
		// 5 answered in 4 s; the pooled median is 30 ms, which neither
		// run's own median (20, 100) is.
		{"pooled", []Result{a, b}, 6, 1, 1.25, 30, 100},
		{"nothing", nil, 0, 0, 0, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := Merge(tc.in...)
			if m.Requests != tc.wantReq || m.Errors != tc.wantErr || m.Throughput != tc.wantRPS || m.P50ms != tc.wantP50 || m.P99ms != tc.wantP99 {
				t.Fatalf("Merge = %+v", m)
			}
		})
	}
	if len(a.Latencies) != 3 || a.P50ms != 20 {
		t.Fatalf("Merge changed its input: %+v", a)
	}
}

func TestKnee(t *testing.T) {
	rps := func(v ...float64) []Result {
		var rs []Result
		for _, x := range v {
			rs = append(rs, Result{Throughput: x})
		}
		return rs
	}
	tests := []struct {
		name string
		rs   []Result
		want int
	}{
		{"levels off", rps(30, 50, 56, 58, 57), 2},
		{"still rising", rps(10, 20, 40), 2},
		{"flat from the start", rps(60, 61, 59), 0},
		{"a dip after the knee", rps(30, 57, 40, 60), 1},
		{"nothing answered", rps(0, 0), -1},
		{"no runs", nil, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Knee(tc.rs, 0.95); got != tc.want {
				t.Fatalf("Knee = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestPaced(t *testing.T) {
	var mu sync.Mutex
	seen := map[int]bool{}
	start := time.Now()
	n := Paced(context.Background(), 100, 5, 300*time.Millisecond, func(_ context.Context, i int) {
		mu.Lock()
		seen[i] = true
		mu.Unlock()
	})
	if n != 30 || len(seen) != 30 {
		t.Fatalf("started %d, saw %d distinct requests, want 30", n, len(seen))
	}
	// The last request starts at 290 ms; generous bounds for a busy box.
	if el := time.Since(start); el < 250*time.Millisecond || el > 5*time.Second {
		t.Fatalf("took %s for 300 ms of load", el)
	}
}
