package upstream

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lookalike-dev/lookalike/shared/apierror"
)

// fakeInstance is a downstream instance with switchable readiness and answer.
type fakeInstance struct {
	srv    *httptest.Server
	ready  atomic.Bool
	status atomic.Int32
	hits   atomic.Int32
	delay  atomic.Int64 // nanoseconds before answering
	mu     sync.Mutex
	hdr    []string
}

func newFakeInstance(t *testing.T) *fakeInstance {
	f := &fakeInstance{}
	f.ready.Store(true)
	f.status.Store(200)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			if f.ready.Load() {
				w.WriteHeader(200)
			} else {
				w.WriteHeader(503)
			}
			return
		}
		f.hits.Add(1)
		if d := time.Duration(f.delay.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		f.mu.Lock()
		f.hdr = append(f.hdr, r.Header.Get(HeaderTimeout))
		f.mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		w.WriteHeader(int(f.status.Load()))
		w.Write(body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// stalledURL accepts connections and never answers.
func stalledURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return "http://" + l.Addr().String()
}

// deadURL is a port with nothing listening.
func deadURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + l.Addr().String()
	l.Close()
	return u
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func send(t *testing.T, ctx context.Context, p *Pool, method string) (int, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, p.BaseURL()+"/v1/thing", bytes.NewReader([]byte("hello")))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 && string(b) != "hello" {
		t.Fatalf("body %q", b)
	}
	return resp.StatusCode, nil
}

func TestBalancingSkipsNotReady(t *testing.T) {
	a, b := newFakeInstance(t), newFakeInstance(t)
	b.ready.Store(false)
	p, err := New(Options{Name: "embed", URLs: []string{a.srv.URL, b.srv.URL + "/"}, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	p.ProbeOnce(context.Background())
	for range 10 {
		if code, err := send(t, context.Background(), p, http.MethodPost); err != nil || code != 200 {
			t.Fatalf("send: %d %v", code, err)
		}
	}
	if a.hits.Load() != 10 || b.hits.Load() != 0 {
		t.Fatalf("hits a=%d b=%d, want 10/0", a.hits.Load(), b.hits.Load())
	}
	b.ready.Store(true)
	p.ProbeOnce(context.Background())
	for range 10 {
		if code, err := send(t, context.Background(), p, http.MethodPost); err != nil || code != 200 {
			t.Fatalf("send: %d %v", code, err)
		}
	}
	if a.hits.Load() != 15 || b.hits.Load() != 5 {
		t.Fatalf("hits a=%d b=%d, want 15/5 (round robin)", a.hits.Load(), b.hits.Load())
	}
	// None ready: a fast 503 with a code.
	a.ready.Store(false)
	b.ready.Store(false)
	p.ProbeOnce(context.Background())
	_, err = send(t, context.Background(), p, http.MethodGet)
	if e, ok := apierror.As(err); !ok || e.Status != 503 || e.Code != apierror.CodeUnavailable || e.RetryAfter < 1 {
		t.Fatalf("got %v, want 503 unavailable with Retry-After", err)
	}
}

func TestRetriesOnlyWhenSafe(t *testing.T) {
	cases := []struct {
		name      string
		method    string
		retryable func(*http.Request) bool
		want      int
		wantHits  [2]int32
	}{
		{"idempotent GET moves to the healthy instance", http.MethodGet, nil, 200, [2]int32{1, 1}},
		{"POST is not retried by default", http.MethodPost, nil, 503, [2]int32{1, 0}},
		{"POST retried when declared safe", http.MethodPost, AllRequests, 200, [2]int32{1, 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad, good := newFakeInstance(t), newFakeInstance(t)
			bad.status.Store(503)
			p, err := New(Options{Name: "search", URLs: []string{bad.srv.URL, good.srv.URL}, Retryable: c.retryable, Log: quietLog()})
			if err != nil {
				t.Fatal(err)
			}
			p.next.Store(uint64(len(p.list()) - 1)) // the next pick is instance 0, the bad one
			code, err := send(t, context.Background(), p, c.method)
			if err != nil || code != c.want {
				t.Fatalf("got %d %v, want %d", code, err, c.want)
			}
			if bad.hits.Load() != c.wantHits[0] || good.hits.Load() != c.wantHits[1] {
				t.Fatalf("hits bad=%d good=%d, want %v", bad.hits.Load(), good.hits.Load(), c.wantHits)
			}
		})
	}
}

// TestStalledDownstreamBreakerOpens: a downstream that accepts connections
// and never answers costs one attempt timeout per request until the breaker
// opens; then requests fail at once with 503 unavailable.
func TestStalledDownstreamBreakerOpens(t *testing.T) {
	p, err := New(Options{Name: "embed", URLs: []string{stalledURL(t)}, AttemptTimeout: 100 * time.Millisecond,
		BreakerMinCalls: 3, BreakerOpen: time.Minute, Retries: -1, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		start := time.Now()
		_, err := send(t, context.Background(), p, http.MethodPost)
		el := time.Since(start)
		if e, ok := apierror.As(err); !ok || e.Status != 504 || e.Code != apierror.CodeDeadlineExceeded {
			t.Fatalf("request %d: %v, want 504 deadline_exceeded", i, err)
		}
		if el < 90*time.Millisecond || el > time.Second {
			t.Fatalf("request %d took %s, want about the 100ms attempt timeout", i, el)
		}
	}
	if p.States()[0].Breaker != "open" {
		t.Fatalf("breaker %s, want open", p.States()[0].Breaker)
	}
	start := time.Now()
	_, err = send(t, context.Background(), p, http.MethodPost)
	if e, ok := apierror.As(err); !ok || e.Status != 503 || e.Code != apierror.CodeUnavailable {
		t.Fatalf("after the breaker opened: %v, want 503 unavailable", err)
	}
	if el := time.Since(start); el > 60*time.Millisecond {
		t.Fatalf("open breaker took %s to refuse", el)
	}
	if p.Available() {
		t.Fatal("pool with an open breaker reports available")
	}
}

// TestCallerDeadlineWins: the caller's deadline bounds the request even when
// the attempt timeout is longer, and retries stop when it is spent.
func TestCallerDeadlineWins(t *testing.T) {
	p, err := New(Options{Name: "search", URLs: []string{stalledURL(t), stalledURL(t)}, AttemptTimeout: 10 * time.Second,
		Retryable: AllRequests, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = send(t, ctx, p, http.MethodGet)
	if e, ok := apierror.As(err); !ok || e.Status != 504 {
		t.Fatalf("got %v, want 504", err)
	}
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Fatalf("took %s past a 150ms deadline", el)
	}
}

func TestDeadDownstreamFast503(t *testing.T) {
	p, err := New(Options{Name: "preprocess", URLs: []string{deadURL(t), deadURL(t)}, Retryable: AllRequests, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = send(t, context.Background(), p, http.MethodPost)
	if e, ok := apierror.As(err); !ok || e.Status != 503 || e.Code != apierror.CodeUnavailable {
		t.Fatalf("got %v, want 503 unavailable", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("dead downstream took %s", el)
	}
	for _, s := range p.States() {
		if s.Ready {
			t.Fatalf("instance %s still ready after connection refused", s.URL)
		}
	}
}

func TestDeadlineHeaderPropagated(t *testing.T) {
	a := newFakeInstance(t)
	p, err := New(Options{Name: "embed", URLs: []string{a.srv.URL}, AttemptTimeout: 2 * time.Second, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	if _, err := send(t, ctx, p, http.MethodPost); err != nil {
		t.Fatal(err)
	}
	ms, err := strconv.Atoi(a.hdr[0])
	if err != nil || ms < 1 || ms > 700 {
		t.Fatalf("%s = %q, want 1..700", HeaderTimeout, a.hdr[0])
	}
}

func TestNewValidates(t *testing.T) {
	cases := []Options{
		{Name: "", URLs: []string{"http://a"}},
		{Name: "x"},
		{Name: "x", URLs: []string{"ftp://a"}},
		{Name: "x", URLs: []string{"127.0.0.1:8081"}},
	}
	for _, o := range cases {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
	if got := SplitURLs(" http://a, ,http://b "); len(got) != 2 || got[1] != "http://b" {
		t.Fatalf("SplitURLs = %q", got)
	}
}
