package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lookalike-dev/lookalike/e2e/internal/stack"
)

// loadResult counts what a bounded query load saw.
type loadResult struct {
	sent, ok, failed atomic.Int64
	mu               sync.Mutex
	failures         []string
}

func (r *loadResult) fail(msg string) {
	r.failed.Add(1)
	r.mu.Lock()
	if len(r.failures) < 20 {
		r.failures = append(r.failures, msg)
	}
	r.mu.Unlock()
}

// queryLoad sends searches from `workers` goroutines until stop is closed
// (bounded by maxDur). Each request is checked: 200 with the product first.
func queryLoad(c *stack.Client, imgs [][]byte, skus []string, workers int, stop <-chan struct{}, maxDur time.Duration, r *loadResult) *sync.WaitGroup {
	var wg sync.WaitGroup
	deadline := time.Now().Add(maxDur)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ; i += workers {
				select {
				case <-stop:
					return
				default:
				}
				if time.Now().After(deadline) {
					return
				}
				k := i % len(imgs)
				r.sent.Add(1)
				res, err := c.SearchImage(imgs[k], "?top_k=1")
				switch {
				case err != nil:
					r.fail(err.Error())
				case len(res.Results) == 0 || res.Results[0].SKU != skus[k]:
					r.fail(fmt.Sprintf("wrong answer for %s: %+v", skus[k], res.Results))
				default:
					r.ok.Add(1)
				}
			}
		}()
	}
	return &wg
}

func loadCatalog(t *testing.T, s *stack.Stack, n int) ([]stack.Product, [][]byte, []string) {
	t.Helper()
	products, imgs, err := stack.LoadCatalog(s.Env.CatalogJL)
	if err != nil {
		t.Fatal(err)
	}
	n = min(n, len(products))
	products, imgs = products[:n], imgs[:n]
	skus := make([]string, n)
	for i, p := range products {
		skus[i] = p.SKU
	}
	return products, imgs, skus
}

// TestRollingRestartZeroFailures replaces every downstream instance, one at
// a time with SIGTERM, while queries run: not one request may fail.
func TestRollingRestartZeroFailures(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs in the full suite")
	}
	s := stack.New(t, stack.Options{Replicas: map[string]int{"preprocess": 2, "embed": 2, "search": 2}})
	// Index into search-0 alone, then give search-1 a copy of its data, so
	// both replicas serve the same catalog (as Qdrant replicas would).
	for _, n := range []string{"preprocess-0", "preprocess-1", "embed-0", "embed-1", "search-0", "gateway"} {
		if err := s.Procs[n].Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"preprocess-0", "preprocess-1", "embed-0", "embed-1", "search-0", "gateway"} {
		if err := s.Procs[n].WaitReady(t.Context(), 120*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	c := stack.NewClient(s.Gateway(), s.AdminKey)
	c.HTTP.Timeout = 20 * time.Second
	products, imgs, skus := loadCatalog(t, s, 20)
	if err := c.IndexAll(filepath.Dir(s.Env.CatalogJL), products, 4); err != nil {
		t.Fatal(err)
	}
	s.Procs["search-0"].Stop(20 * time.Second)
	if out, err := exec.Command("cp", "-a", filepath.Join(s.Dir, "search-0"), filepath.Join(s.Dir, "search-1")).CombinedOutput(); err != nil {
		t.Fatalf("copying search data: %v %s", err, out)
	}
	for _, n := range []string{"search-0", "search-1"} {
		if err := s.Procs[n].Start(); err != nil {
			t.Fatal(err)
		}
		if err := s.Procs[n].WaitReady(t.Context(), 60*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	waitGatewayServes(t, c, imgs[0])

	var r loadResult
	stop := make(chan struct{})
	wg := queryLoad(c, imgs, skus, 4, stop, 4*time.Minute, &r)
	time.Sleep(2 * time.Second)
	for _, svc := range []string{"preprocess", "embed", "search"} {
		for _, n := range s.Instances[svc] {
			p := s.Procs[n]
			p.Stop(30 * time.Second)
			if err := p.Start(); err != nil {
				t.Fatal(err)
			}
			if err := p.WaitReady(t.Context(), 60*time.Second); err != nil {
				t.Fatal(err)
			}
			// Give the gateway's readiness probe time to see it back.
			time.Sleep(3 * time.Second)
			t.Logf("restarted %s; %d sent, %d failed so far", n, r.sent.Load(), r.failed.Load())
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("rolling restart: %d requests sent, %d ok, %d failed", r.sent.Load(), r.ok.Load(), r.failed.Load())
	if r.failed.Load() != 0 {
		t.Fatalf("%d requests failed during the rolling restart: %v", r.failed.Load(), r.failures)
	}
	if r.ok.Load() < 20 {
		t.Fatalf("only %d requests succeeded: the load did not run", r.ok.Load())
	}
}

func waitGatewayServes(t *testing.T, c *stack.Client, img []byte) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		body, ct := stack.Multipart(nil, map[string][]byte{"image": img})
		st, _, _, err := c.Do(http.MethodPost, "/v1/search?top_k=1", ct, body, false)
		if err == nil && st == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway does not serve searches: %d %v", st, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestKillDownstreamFailsFastAndRecovers SIGKILLs each downstream while
// queries run: the gateway answers 503 with a code within its timeout, leaks
// no goroutines, and serves again within 5 s of the restarted instance
// being ready.
func TestKillDownstreamFailsFastAndRecovers(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs in the full suite")
	}
	s := stack.New(t, stack.Options{})
	s.Start(t)
	c := stack.NewClient(s.Gateway(), s.AdminKey)
	c.HTTP.Timeout = 30 * time.Second
	products, imgs, _ := loadCatalog(t, s, 10)
	if err := c.IndexAll(filepath.Dir(s.Env.CatalogJL), products, 4); err != nil {
		t.Fatal(err)
	}
	waitGatewayServes(t, c, imgs[0])
	before, err := c.Metric(s.Procs["gateway"].MetricsURL(), "go_goroutines")
	if err != nil {
		t.Fatal(err)
	}
	injected := 0
	for _, svc := range []string{"preprocess", "embed", "search"} {
		p := s.Procs[svc]
		p.Kill()
		injected++
		// While it is down: every answer is a fast 503 with a code.
		for i := range 5 {
			body, ct := stack.Multipart(nil, map[string][]byte{"image": imgs[i%len(imgs)]})
			start := time.Now()
			st, b, _, err := c.Do(http.MethodPost, "/v1/search?top_k=1", ct, body, false)
			took := time.Since(start)
			if err != nil {
				t.Fatalf("%s down: request error %v", svc, err)
			}
			var env stack.ErrorBody
			if st != http.StatusServiceUnavailable || json.Unmarshal(b, &env) != nil || env.Error.Code == "" {
				t.Fatalf("%s down: got %d %s, want 503 with a code", svc, st, b)
			}
			if took > 10*time.Second {
				t.Fatalf("%s down: 503 took %s", svc, took)
			}
		}
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		if err := p.WaitReady(t.Context(), 60*time.Second); err != nil {
			t.Fatal(err)
		}
		readyAt := time.Now()
		for {
			body, ct := stack.Multipart(nil, map[string][]byte{"image": imgs[0]})
			st, _, _, err := c.Do(http.MethodPost, "/v1/search?top_k=1", ct, body, false)
			if err == nil && st == http.StatusOK {
				break
			}
			if time.Since(readyAt) > 5*time.Second {
				t.Fatalf("%s restarted and ready, but the gateway still fails after 5 s (%d %v)", svc, st, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("%s: killed, 503s were fast, served again %s after it was ready", svc, time.Since(readyAt).Round(time.Millisecond))
	}
	// No goroutine leak: back near the count before the faults.
	var after float64
	for range 50 {
		after, _ = c.Metric(s.Procs["gateway"].MetricsURL(), "go_goroutines")
		if after <= before+10 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("faults injected: %d; gateway goroutines before %v, after %v", injected, before, after)
	if after > before+10 {
		t.Fatalf("goroutines grew from %v to %v", before, after)
	}
}

// TestStalledDownstreamFailsFast points the gateway at an embed that accepts
// connections and never answers: requests must fail fast with a 503 code.
func TestStalledDownstreamFailsFast(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs in the full suite")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, conn) // never read, never answer
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	s := stack.New(t, stack.Options{Extra: map[string][]string{"gateway": {"EMBED_URLS=http://" + ln.Addr().String(), "GATEWAY_EMBED_TIMEOUT=1s", "GATEWAY_REQUEST_TIMEOUT=5s"}}})
	for _, n := range []string{"preprocess", "search", "gateway"} {
		if err := s.Procs[n].Start(); err != nil {
			t.Fatal(err)
		}
	}
	// The gateway is live (healthz) even though embed stalls.
	c := stack.NewClient(s.Gateway(), s.AdminKey)
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, _, _, err := c.Do(http.MethodGet, "/healthz", "", nil, false)
		if err == nil && st == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("gateway never healthy")
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, imgs, _ := loadCatalog(t, s, 1)
	var slowest time.Duration
	for i := range 12 {
		body, ct := stack.Multipart(nil, map[string][]byte{"image": imgs[0]})
		start := time.Now()
		st, b, _, err := c.Do(http.MethodPost, "/v1/search", ct, body, false)
		took := time.Since(start)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		var env stack.ErrorBody
		if st != http.StatusServiceUnavailable && st != http.StatusGatewayTimeout || json.Unmarshal(b, &env) != nil || env.Error.Code == "" {
			t.Fatalf("request %d: %d %s, want 503/504 with a code", i, st, b)
		}
		if i >= 6 { // by now the breaker is open or the instance marked not ready
			slowest = max(slowest, took)
		}
	}
	t.Logf("stalled embed: later requests failed within %s", slowest)
	if slowest > 500*time.Millisecond {
		t.Fatalf("requests to a stalled downstream still take %s: no fail-fast", slowest)
	}
}

// TestSearchKill9KeepsAcknowledgedWrites SIGKILLs search in the middle of
// upserts; after restart every acknowledged SKU is there.
func TestSearchKill9KeepsAcknowledgedWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs in the full suite")
	}
	s := stack.New(t, stack.Options{})
	s.Start(t)
	c := stack.NewClient(s.Gateway(), s.AdminKey)
	c.HTTP.Timeout = 30 * time.Second
	products, _, _ := loadCatalog(t, s, 8)
	catDir := filepath.Dir(s.Env.CatalogJL)
	var acked sync.Map
	var ackCount atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := products[(w+i)%len(products)]
				p.SKU = fmt.Sprintf("DUR-%d-%d", w, i)
				if err := c.IndexProduct(catDir, p); err == nil {
					acked.Store(p.SKU, true)
					ackCount.Add(1)
				}
				if i > 200 {
					return
				}
			}
		}()
	}
	for ackCount.Load() < 15 {
		time.Sleep(50 * time.Millisecond)
	}
	s.Procs["search"].Kill()
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	if err := s.Procs["search"].Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Procs["search"].WaitReady(t.Context(), 60*time.Second); err != nil {
		t.Fatal(err)
	}
	lost, total := 0, 0
	acked.Range(func(k, _ any) bool {
		total++
		var st int
		for range 50 { // the gateway may need a moment to see search ready again
			st, _, _, _ = c.Do(http.MethodGet, "/v1/products/"+k.(string), "", nil, true)
			if st != http.StatusServiceUnavailable {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if st != http.StatusOK {
			lost++
			t.Errorf("acknowledged %s: %d after restart", k, st)
		}
		return true
	})
	t.Logf("durability: %d acknowledged writes, %d lost after kill -9", total, lost)
}
