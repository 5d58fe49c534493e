package upstream

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/lookalike-dev/lookalike/shared/apierror"
)

// TestCallerAbandonsNeverOpenBreaker: callers that cancel or whose own
// deadline passes while a healthy but slow instance works do not count as
// its failures, however many there are; a well-behaved caller is served.
func TestCallerAbandonsNeverOpenBreaker(t *testing.T) {
	slow := newFakeInstance(t)
	slow.delay.Store(int64(300 * time.Millisecond))
	p, err := New(Options{Name: "preprocess", URLs: []string{slow.srv.URL}, BreakerMinCalls: 3, BreakerOpen: time.Minute,
		Retryable: AllRequests, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(context.Background())
			if i%2 == 0 {
				ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
			} else {
				time.AfterFunc(20*time.Millisecond, cancel)
			}
			defer cancel()
			_, err := send(t, ctx, p, http.MethodPost)
			if err == nil {
				t.Errorf("abandoned call %d succeeded", i)
			}
			if e, ok := apierror.As(err); ok && e.Status == http.StatusServiceUnavailable {
				t.Errorf("abandoned call %d: %v, the breaker refused it", i, err)
			}
		})
	}
	wg.Wait()
	if st := p.States()[0].Breaker; st != "closed" {
		t.Fatalf("breaker %s after callers abandoned their calls, want closed", st)
	}
	if code, err := send(t, context.Background(), p, http.MethodPost); err != nil || code != 200 {
		t.Fatalf("well-behaved call: %d %v", code, err)
	}
}

// TestBreakerTripsOnFailureRatio: the breaker opens on the share of failed
// calls in its window, and not before it has seen the minimum number.
func TestBreakerTripsOnFailureRatio(t *testing.T) {
	cases := []struct {
		name     string
		pattern  []int // statuses answered in turn
		calls    int
		wantOpen bool
	}{
		{"below the minimum calls, all failing", []int{500}, 9, false},
		{"a third failing", []int{500, 200, 200}, 30, false},
		{"two thirds failing", []int{500, 500, 200}, 30, true},
		{"every call failing", []int{503}, 10, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFakeInstance(t)
			p, err := New(Options{Name: "search", URLs: []string{f.srv.URL}, Retries: -1, BreakerMinCalls: 10,
				BreakerFailureRatio: 0.5, BreakerWindow: time.Minute, BreakerOpen: time.Minute, Log: quietLog()})
			if err != nil {
				t.Fatal(err)
			}
			for i := range c.calls {
				f.status.Store(int32(c.pattern[i%len(c.pattern)]))
				_, _ = send(t, context.Background(), p, http.MethodPost)
			}
			if open := p.States()[0].Breaker == "open"; open != c.wantOpen {
				t.Fatalf("breaker open=%v after %d calls, want %v", open, c.calls, c.wantOpen)
			}
		})
	}
}
