package guard

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lookalike-dev/lookalike/shared/apierror"
)

// serve runs a bare echo with mw in front of handler, writing apierrors as
// status + Retry-After (the real envelope is shared/server's).
func serve(mw echo.MiddlewareFunc, h echo.HandlerFunc) *echo.Echo {
	e := echo.New()
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		if ae, ok := apierror.As(err); ok {
			if ae.RetryAfter > 0 {
				c.Response().Header().Set("Retry-After", "1")
			}
			c.JSON(ae.Status, apierror.Envelope{Error: ae})
			return
		}
		c.NoContent(500)
	}
	e.Use(mw)
	e.GET("/x", h)
	return e
}

func TestLoadShedding(t *testing.T) {
	cases := []struct {
		name      string
		limit     int
		clients   int
		queueWait time.Duration
		wantOK    int
		wantShed  int
	}{
		{"over the limit sheds", 4, 12, 0, 4, 8},
		{"under the limit serves all", 4, 3, 0, 3, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			release := make(chan struct{})
			var entered sync.WaitGroup
			entered.Add(min(c.limit, c.clients))
			var inHandler atomic.Int32
			lim := NewConcurrency(c.limit, c.queueWait)
			e := serve(lim.Middleware(), func(ec echo.Context) error {
				if inHandler.Add(1) <= int32(c.limit) {
					entered.Done()
				}
				<-release
				return ec.NoContent(200)
			})
			var ok, shed atomic.Int32
			var wg sync.WaitGroup
			codes := make(chan *httptest.ResponseRecorder, c.clients)
			for range c.clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rec := httptest.NewRecorder()
					e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/x", nil))
					codes <- rec
				}()
			}
			entered.Wait()
			// Every request past the limit is refused while the slots are held.
			deadline := time.After(5 * time.Second)
			for shed.Load() < int32(c.wantShed) {
				select {
				case rec := <-codes:
					if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
						t.Fatalf("got %d (Retry-After %q) while full, want 429 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
					}
					shed.Add(1)
				case <-deadline:
					t.Fatalf("only %d shed", shed.Load())
				}
			}
			if lim.InFlight() != min(c.limit, c.clients) {
				t.Fatalf("in flight %d", lim.InFlight())
			}
			close(release)
			wg.Wait()
			close(codes)
			for rec := range codes {
				if rec.Code == 200 {
					ok.Add(1)
				}
			}
			if int(ok.Load()) != c.wantOK || int(shed.Load()) != c.wantShed {
				t.Fatalf("ok=%d shed=%d, want %d/%d", ok.Load(), shed.Load(), c.wantOK, c.wantShed)
			}
			if lim.InFlight() != 0 {
				t.Fatalf("slots leaked: %d", lim.InFlight())
			}
		})
	}
}

func TestQueueWaitAdmitsWhenASlotFrees(t *testing.T) {
	lim := NewConcurrency(1, time.Second)
	e := serve(lim.Middleware(), func(ec echo.Context) error {
		time.Sleep(50 * time.Millisecond)
		return ec.NoContent(200)
	})
	var wg sync.WaitGroup
	var bad atomic.Int32
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/x", nil))
			if rec.Code != 200 {
				bad.Add(1)
			}
		}()
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d requests shed despite the queue wait", bad.Load())
	}
}

func TestRateLimitPerClient(t *testing.T) {
	e := serve(RateLimit(RateConfig{PerSecond: 0.001, Burst: 2, ByKey: true}), func(ec echo.Context) error { return ec.NoContent(200) })
	do := func(remote, auth string) int {
		req := httptest.NewRequest(http.MethodGet, "/x", nil)
		req.RemoteAddr = remote
		req.Header.Set("X-Forwarded-For", "9.9.9.9") // not trusted: must not let clients pick their bucket
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		return rec.Code
	}
	steps := []struct {
		remote, auth string
		want         int
	}{
		{"10.0.0.1:1", "", 200},
		{"10.0.0.1:2", "", 200},
		{"10.0.0.1:3", "", 429},
		{"10.0.0.2:1", "", 200}, // another IP has its own bucket
		{"10.0.0.1:4", "key-a", 200},
		{"10.0.0.1:5", "key-a", 200},
		{"10.0.0.1:6", "key-a", 429},
		{"10.0.0.1:7", "key-b", 200}, // another key has its own bucket
	}
	for i, s := range steps {
		if got := do(s.remote, s.auth); got != s.want {
			t.Fatalf("step %d (%s %s): %d, want %d", i, s.remote, s.auth, got, s.want)
		}
	}
}

func TestClientIP(t *testing.T) {
	ingress := []string{"10.0.0.0/8", "fd00::/8"}
	tests := []struct {
		name    string
		trusted []string
		remote  string
		xff     string
		want    string
	}{
		{"no proxies: the peer, header ignored", nil, "203.0.113.5:1", "198.51.100.1", "203.0.113.5"},
		{"no proxies: a private peer's header is ignored too", nil, "10.1.2.3:1", "198.51.100.1", "10.1.2.3"},
		{"from the ingress: the client it names", ingress, "10.1.2.3:1", "198.51.100.1", "198.51.100.1"},
		{"from the ingress: spoofed left entries skipped", ingress, "10.1.2.3:1", "1.1.1.1, 6.6.6.6, 198.51.100.1", "198.51.100.1"},
		{"from the ingress: trusted hops skipped", ingress, "10.1.2.3:1", "198.51.100.1, 10.9.9.9", "198.51.100.1"},
		{"from the ingress, no header: the ingress", ingress, "10.1.2.3:1", "", "10.1.2.3"},
		{"from the ingress, junk header: the ingress", ingress, "10.1.2.3:1", "not-an-ip", "10.1.2.3"},
		{"not the ingress: header ignored", ingress, "203.0.113.5:1", "198.51.100.1", "203.0.113.5"},
		{"private peers are trusted only when listed", ingress, "192.168.1.1:1", "198.51.100.1", "192.168.1.1"},
		{"loopback is trusted only when listed", ingress, "127.0.0.1:1", "198.51.100.1", "127.0.0.1"},
		{"loopback listed", []string{"127.0.0.1"}, "127.0.0.1:1", "198.51.100.1", "198.51.100.1"},
		{"ipv6 ingress", ingress, "[fd00::7]:1", "2001:db8::9", "2001:db8::9"},
		{"single ip entry", []string{"10.1.2.3"}, "10.1.2.3:1", "198.51.100.1", "198.51.100.1"},
		{"single ip entry, another pod", []string{"10.1.2.3"}, "10.1.2.4:1", "198.51.100.1", "10.1.2.4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ext, err := ClientIP(tc.trusted)
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest(http.MethodGet, "/x", nil)
			req.RemoteAddr = tc.remote
			if tc.xff != "" {
				req.Header.Set("X-Forwarded-For", tc.xff)
			}
			if got := ext(req); got != tc.want {
				t.Fatalf("client %q, want %q", got, tc.want)
			}
		})
	}
	for _, bad := range []string{"10.0.0.0/33", "ingress", "10.0.0"} {
		if _, err := ClientIP([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// Behind the ingress every request comes from the ingress pod: with its
// range trusted, each client behind it has its own bucket, so one abuser
// no longer spends everyone's rate.
func TestRateLimitPerClientBehindProxy(t *testing.T) {
	e := serve(RateLimit(RateConfig{PerSecond: 0.001, Burst: 2}), func(ec echo.Context) error { return ec.NoContent(200) })
	ext, err := ClientIP([]string{"10.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	e.IPExtractor = ext
	do := func(remote, xff string) int {
		req := httptest.NewRequest(http.MethodGet, "/x", nil)
		req.RemoteAddr = remote
		req.Header.Set("X-Forwarded-For", xff)
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		return rec.Code
	}
	steps := []struct {
		remote, xff string
		want        int
	}{
		{"10.0.0.9:1", "198.51.100.1", 200},
		{"10.0.0.9:2", "198.51.100.1", 200},
		{"10.0.0.9:3", "198.51.100.1", 429},          // the abuser is out
		{"10.0.0.9:4", "198.51.100.2", 200},          // another shopper through the same ingress pod is not
		{"10.0.0.8:1", "198.51.100.1", 429},          // nor does another ingress pod reset the abuser
		{"10.0.0.9:5", "7.7.7.7, 198.51.100.1", 429}, // nor a made-up entry in front
		{"203.0.113.5:1", "198.51.100.3", 200},       // a direct peer counts as itself
		{"203.0.113.5:2", "198.51.100.4", 200},       // and cannot pick another bucket
		{"203.0.113.5:3", "198.51.100.5", 429},
	}
	for i, s := range steps {
		if got := do(s.remote, s.xff); got != s.want {
			t.Fatalf("step %d (%s %s): %d, want %d", i, s.remote, s.xff, got, s.want)
		}
	}
}
