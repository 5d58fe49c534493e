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
