package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"testing"
)

// fakeResolver answers from a table that tests change between lookups.
type fakeResolver struct {
	mu  sync.Mutex
	ips map[string][]string
	srv map[string][]*net.SRV
	err error
}

func (r *fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return nil, r.err
	}
	var out []net.IPAddr
	for _, s := range r.ips[host] {
		out = append(out, net.IPAddr{IP: net.ParseIP(s)})
	}
	return out, nil
}

func (r *fakeResolver) LookupSRV(_ context.Context, _, _, name string) (string, []*net.SRV, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return "", nil, r.err
	}
	return name, r.srv[name], nil
}

func (r *fakeResolver) set(f func(*fakeResolver)) {
	r.mu.Lock()
	f(r)
	r.mu.Unlock()
}

func hostPort(t *testing.T, raw string) (string, uint16) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	return u.Hostname(), uint16(port)
}

func hosts(p *Pool) []string {
	var out []string
	for _, s := range p.States() {
		u, _ := url.Parse(s.URL)
		out = append(out, u.Host)
	}
	slices.Sort(out)
	return out
}

// TestSRVEndpointsPerPod: a dnssrv+ URL becomes one instance per record,
// each balanced, probed and guarded by its own breaker; re-resolution adds
// and drops pods, keeps a surviving pod's breaker, and a failed lookup
// keeps the last instances.
func TestSRVEndpointsPerPod(t *testing.T) {
	a, b, c := newFakeInstance(t), newFakeInstance(t), newFakeInstance(t)
	srv := func(f *fakeInstance) *net.SRV {
		h, p := hostPort(t, f.srv.URL)
		return &net.SRV{Target: h + ".", Port: p}
	}
	const name = "_http._tcp.search-pods.lookalike.svc.cluster.local"
	r := &fakeResolver{srv: map[string][]*net.SRV{name: {srv(a), srv(b)}}}
	p, err := New(Options{Name: "search", URLs: []string{"dnssrv+http://" + name}, Resolver: r, Retries: -1,
		BreakerMinCalls: 2, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	if code, err := send(t, context.Background(), p, http.MethodPost); err == nil {
		t.Fatalf("served %d before the first resolution", code)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p.Start(ctx)
	if got := hosts(p); len(got) != 2 {
		t.Fatalf("instances %v, want a and b", got)
	}
	for range 10 {
		if code, err := send(t, context.Background(), p, http.MethodPost); err != nil || code != 200 {
			t.Fatalf("send: %d %v", code, err)
		}
	}
	if a.hits.Load() != 5 || b.hits.Load() != 5 {
		t.Fatalf("hits a=%d b=%d, want 5/5", a.hits.Load(), b.hits.Load())
	}
	// b fails: its breaker opens, a's stays closed and takes every call.
	b.status.Store(500)
	for range 20 {
		_, _ = send(t, context.Background(), p, http.MethodPost)
	}
	states := map[string]string{}
	for _, s := range p.States() {
		states[s.URL] = s.Breaker
	}
	bURL := b.srv.URL
	aURL := a.srv.URL
	if states[bURL] != "open" || states[aURL] != "closed" {
		t.Fatalf("breakers %v, want b open and a closed", states)
	}
	// c joins, a leaves; b keeps its open breaker.
	r.set(func(r *fakeResolver) { r.srv[name] = []*net.SRV{srv(b), srv(c)} })
	p.ResolveOnce(ctx)
	states = map[string]string{}
	for _, s := range p.States() {
		states[s.URL] = s.Breaker
	}
	cURL := c.srv.URL
	if len(states) != 2 || states[bURL] != "open" || states[cURL] != "closed" {
		t.Fatalf("after re-resolution %v, want b (open) and c (closed)", states)
	}
	before := c.hits.Load()
	for range 4 {
		if code, err := send(t, context.Background(), p, http.MethodPost); err != nil || code != 200 {
			t.Fatalf("send after re-resolution: %d %v", code, err)
		}
	}
	if c.hits.Load()-before != 4 {
		t.Fatalf("c served %d of 4 while b's breaker is open", c.hits.Load()-before)
	}
	// DNS fails or answers nothing: the last instances stay.
	for _, fail := range []func(*fakeResolver){
		func(r *fakeResolver) { r.err = errors.New("SERVFAIL") },
		func(r *fakeResolver) { r.err = nil; r.srv[name] = nil },
	} {
		r.set(fail)
		p.ResolveOnce(ctx)
		if got := len(p.States()); got != 2 {
			t.Fatalf("%d instances after a failed lookup, want the last 2", got)
		}
	}
}

// TestDNSEndpointsUseURLPort: a dns+ URL's A/AAAA records become instances
// on the URL's port; a pod whose first probe fails joins not ready.
func TestDNSEndpointsUseURLPort(t *testing.T) {
	l1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l1.Addr().String())
	l2, err := net.Listen("tcp", "127.0.0.2:"+port)
	if err != nil {
		l1.Close()
		t.Skipf("no second loopback address on this machine: %v", err)
	}
	var hits [2]int
	var mu sync.Mutex
	for i, l := range []net.Listener{l1, l2} {
		s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/readyz" {
				if i == 1 {
					w.WriteHeader(503)
				}
				return
			}
			mu.Lock()
			hits[i]++
			mu.Unlock()
			_, _ = io.Copy(w, r.Body)
		}))
		s.Listener.Close()
		s.Listener = l
		s.Start()
		t.Cleanup(s.Close)
	}
	r := &fakeResolver{ips: map[string][]string{"embed-pods": {"127.0.0.1", "127.0.0.2"}}}
	p, err := New(Options{Name: "embed", URLs: []string{"dns+http://embed-pods:" + port}, Resolver: r, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p.Start(ctx)
	want := []string{"127.0.0.1:" + port, "127.0.0.2:" + port}
	if got := hosts(p); !slices.Equal(got, want) {
		t.Fatalf("instances %v, want %v", got, want)
	}
	for range 6 {
		if code, err := send(t, context.Background(), p, http.MethodGet); err != nil || code != 200 {
			t.Fatalf("send: %d %v", code, err)
		}
	}
	if hits[0] != 6 || hits[1] != 0 {
		t.Fatalf("hits %v, want all 6 on the ready pod", hits)
	}
}

func TestParseTargets(t *testing.T) {
	for _, raw := range []string{"dns+http://embed-pods", "dns+127.0.0.1:80", "dnssrv+ftp://x", "srv+http://x:1"} {
		if _, err := New(Options{Name: "x", URLs: []string{raw}}); err == nil {
			t.Errorf("New accepted %q", raw)
		}
	}
	for _, raw := range []string{"dns+http://embed-pods:8082", "dnssrv+http://_http._tcp.embed-pods", "http://localhost:8082/"} {
		if _, err := New(Options{Name: "x", URLs: []string{raw}}); err != nil {
			t.Errorf("New(%q): %v", raw, err)
		}
	}
}
