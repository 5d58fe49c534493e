package e2e

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lookalike-dev/lookalike/e2e/internal/loadgen"
	"github.com/lookalike-dev/lookalike/e2e/internal/stack"
)

// abortStats counts what the aborting clients did.
type abortStats struct {
	midBody, midPipeline, answered, dialErr atomic.Int64
	mu                                      sync.Mutex
	codes                                   map[int]int // answers that came before the client gave up
}

// abortMidBody sends a search upload's headers and part of its body, then
// closes the connection: the gateway never gets the whole image.
func abortMidBody(gateway string, body []byte, ct string, rng *rand.Rand) error {
	u, err := url.Parse(gateway)
	if err != nil {
		return err
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	w := bufio.NewWriter(conn)
	fmt.Fprintf(w, "POST /v1/search?top_k=3 HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", u.Host, ct, len(body))
	_, _ = w.Write(body[:1+rng.IntN(len(body)-1)])
	if err := w.Flush(); err != nil {
		return err
	}
	time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
	return nil
}

// abortMidPipeline sends the whole upload and gives up while the gateway
// is calling preprocess, embed and search for it.
func abortMidPipeline(ctx context.Context, hc *http.Client, gateway string, body []byte, ct string, after time.Duration) (status int) {
	ctx, cancel := context.WithTimeout(ctx, after)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, gateway+"/v1/search?top_k=3", strings.NewReader(string(body)))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", ct)
	resp, err := hc.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestAbortStormSparesWellBehavedClient: 20 clients abort their uploads
// mid-request at 50 requests a second for 10 s, half cut off while the body
// is sent and half given up while the gateway works downstream, and one
// well-behaved client searches all along: it sees no 503 (no breaker of the
// single preprocess, embed or search instance opens: the abandoned calls
// are the callers' own doing) and every answer is right.
func TestAbortStormSparesWellBehavedClient(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs in the full suite")
	}
	s := stack.New(t, stack.Options{})
	s.Start(t)
	c := stack.NewClient(s.Gateway(), s.AdminKey)
	products, imgs, skus := loadCatalog(t, s, 12)
	if err := c.IndexAll(filepath.Dir(s.Env.CatalogJL), products, 3); err != nil {
		t.Fatal(err)
	}
	waitGatewayServes(t, c, imgs[0])

	// How long a search takes here, so the mid-pipeline aborts land inside it.
	t0 := time.Now()
	for i := range 5 {
		if _, err := c.SearchImage(imgs[i], "?top_k=1"); err != nil {
			t.Fatal(err)
		}
	}
	typical := time.Since(t0) / 5
	t.Logf("a search takes about %s before the storm", typical.Round(time.Millisecond))

	const (
		abusers = 20
		rate    = 50.0
		storm   = 10 * time.Second
	)
	bodies, types := make([][]byte, len(imgs)), make([]string, len(imgs))
	for i, img := range imgs {
		b, typ := stack.Multipart(nil, map[string][]byte{"image": img})
		bodies[i], types[i] = b.Bytes(), typ
	}
	st := abortStats{codes: map[int]int{}}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: abusers}}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stormDone := make(chan int)
	go func() {
		stormDone <- loadgen.Paced(ctx, rate, abusers, storm, func(ctx context.Context, i int) {
			rng := rand.New(rand.NewPCG(uint64(i), 19))
			body, ct := bodies[i%len(bodies)], types[i%len(bodies)]
			if i%2 == 0 {
				if err := abortMidBody(s.Gateway(), body, ct, rng); err != nil {
					st.dialErr.Add(1)
				}
				st.midBody.Add(1)
				return
			}
			// Within the time a search takes unloaded: most are given up
			// while the gateway waits on preprocess, embed or search.
			after := time.Millisecond + time.Duration(rng.Int64N(int64(typical)))
			if code := abortMidPipeline(ctx, hc, s.Gateway(), body, ct, after); code != 0 {
				st.answered.Add(1)
				st.mu.Lock()
				st.codes[code]++
				st.mu.Unlock()
			}
			st.midPipeline.Add(1)
		})
	}()

	// The well-behaved client searches, one request at a time, through the storm.
	var mu sync.Mutex
	var ok, unavailable, other int
	var failures []string
	deadline := time.Now().Add(storm)
	for i := 0; time.Now().Before(deadline); i++ {
		k := i % len(imgs)
		body, typ := stack.Multipart(nil, map[string][]byte{"image": imgs[k]})
		code, b, _, err := c.Do(http.MethodPost, "/v1/search?top_k=1", typ, body, false)
		mu.Lock()
		switch {
		case err == nil && code == http.StatusOK && strings.Contains(string(b), `"sku":"`+skus[k]+`"`):
			ok++
		case code == http.StatusServiceUnavailable:
			unavailable++
			failures = append(failures, fmt.Sprintf("503 %s", b))
		default:
			other++
			failures = append(failures, fmt.Sprintf("%d %v %.200s", code, err, b))
		}
		mu.Unlock()
	}
	started := <-stormDone
	t.Logf("storm: %d aborted uploads started (%d cut off mid-body, %d given up mid-pipeline, %d of those answered first %v, %d dial errors)",
		started, st.midBody.Load(), st.midPipeline.Load(), st.answered.Load(), st.codes, st.dialErr.Load())
	t.Logf("well-behaved client: %d searches, %d right, %d 503, %d other failures", ok+unavailable+other, ok, unavailable, other)
	if started < int(rate*storm.Seconds())*9/10 {
		t.Fatalf("only %d of %d aborted uploads started", started, int(rate*storm.Seconds()))
	}
	if st.midPipeline.Load()-st.answered.Load() < 50 {
		t.Fatalf("only %d uploads were given up while the gateway worked on them; the storm did not test the breakers",
			st.midPipeline.Load()-st.answered.Load())
	}
	if unavailable != 0 || other != 0 || ok == 0 {
		t.Fatalf("well-behaved client: %d right, %d 503, %d other failures; first: %q", ok, unavailable, other, failures[:min(len(failures), 5)])
	}
	// No breaker opened on the way.
	resp, err := http.Get(s.Procs["gateway"].MetricsURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	gauges := 0
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "lookalike_gateway_upstream_breaker_open{") {
			gauges++
			if !strings.HasSuffix(line, " 0") {
				t.Errorf("breaker open after the storm: %s", line)
			}
		}
	}
	if gauges < 3 {
		t.Fatalf("%d breaker gauges, want one per downstream instance (3)", gauges)
	}
}
