package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/buildinfo"
	"github.com/lookalike-dev/lookalike/shared/logging"
	"github.com/lookalike-dev/lookalike/shared/telemetry"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func newTestServer(t *testing.T, cfg Config) (*Server, *syncBuf) {
	t.Helper()
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{Service: "t", Version: "v0", Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	buf := &syncBuf{}
	return New(cfg, logging.New(buf, "t", slog.LevelInfo), tel, buildinfo.Read("t", "abc")), buf
}

func TestErrorEnvelope(t *testing.T) {
	s, logs := newTestServer(t, Config{BodyLimit: 10})
	s.Echo.GET("/api", func(c echo.Context) error {
		return apierror.BadRequest("corrupt_image", "the image is cut short").WithRetryAfter(0)
	})
	s.Echo.GET("/busy", func(c echo.Context) error {
		return apierror.New(http.StatusTooManyRequests, apierror.CodeOverloaded, "queue full").WithRetryAfter(2)
	})
	s.Echo.GET("/boom", func(c echo.Context) error { return errors.New("secret internal detail") })
	s.Echo.GET("/panic", func(c echo.Context) error { panic("oops") })
	s.Echo.POST("/echo", func(c echo.Context) error {
		_, err := io.ReadAll(c.Request().Body)
		return err
	})
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
		retryAfter               string
	}{
		{"api error", "GET", "/api", "", 400, "corrupt_image", ""},
		{"retry after", "GET", "/busy", "", 429, "overloaded", "2"},
		{"unknown error hides cause", "GET", "/boom", "", 500, "internal", ""},
		{"panic", "GET", "/panic", "", 500, "internal", ""},
		{"no route", "GET", "/nope", "", 404, "not_found", ""},
		{"method", "DELETE", "/api", "", 405, "method_not_allowed", ""},
		{"body limit", "POST", "/echo", strings.Repeat("x", 100), 413, "payload_too_large", ""},
		{"not ready", "GET", "/readyz", "", 503, "not_ready", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			s.Echo.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body)))
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			var env apierror.Envelope
			if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || env.Error == nil {
				t.Fatalf("not an envelope: %s", rec.Body)
			}
			if env.Error.Code != tc.code || env.Error.Message == "" || env.Error.RequestID == "" {
				t.Fatalf("envelope %+v, want code %q with message and request id", env.Error, tc.code)
			}
			if strings.Contains(rec.Body.String(), "secret internal detail") {
				t.Fatal("cause leaked to the client")
			}
			if got := rec.Header().Get("Retry-After"); got != tc.retryAfter {
				t.Fatalf("Retry-After %q, want %q", got, tc.retryAfter)
			}
		})
	}
	// One log line per request, with the code; the 500's cause is logged.
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != len(tests)-1 { // readyz is not logged
		t.Fatalf("%d log lines for %d logged requests:\n%s", len(lines), len(tests)-1, logs)
	}
	if !strings.Contains(logs.String(), "secret internal detail") || !strings.Contains(logs.String(), `"error_code":"corrupt_image"`) {
		t.Fatalf("logs lack the cause or code:\n%s", logs)
	}
}

func TestRunLifecycle(t *testing.T) {
	s, _ := newTestServer(t, Config{Addr: "127.0.0.1:0", DrainDelay: 300 * time.Millisecond, ShutdownTimeout: 2 * time.Second})
	warmCalls := 0
	warmErr := errors.New("model not loaded yet")
	var mu sync.Mutex
	release := make(chan struct{})
	s.Echo.GET("/slow", func(c echo.Context) error {
		<-release
		return c.String(200, "done")
	})
	closed := false
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.Run(ctx, func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			warmCalls++
			if warmCalls < 3 {
				return warmErr
			}
			return nil
		}, func(context.Context) error { closed = true; return nil })
	}()
	addr, err := s.Addr(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr.String()
	get := func(p string) int {
		resp, err := http.Get(base + p)
		if err != nil {
			return -1
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := get("/healthz"); got != 200 {
		t.Fatalf("healthz %d", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for get("/readyz") != 200 {
		if time.Now().After(deadline) {
			t.Fatal("never ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// An in-flight request survives shutdown.
	slow := make(chan int, 1)
	go func() { slow <- get("/slow") }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	time.Sleep(100 * time.Millisecond)
	if got := get("/readyz"); got != 503 {
		t.Fatalf("readyz during drain = %d, want 503", got)
	}
	close(release)
	if got := <-slow; got != 200 {
		t.Fatalf("in-flight request got %d", got)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !closed {
		t.Fatal("closer not run")
	}
	if get("/healthz") != -1 {
		t.Fatal("still listening after shutdown")
	}
}

// TestOperationalRoutesOffThePublicListener: metrics, build details,
// profiles and the reason a service is not ready are served only on the
// internal listener; the public /readyz says no more than "not ready".
func TestOperationalRoutesOffThePublicListener(t *testing.T) {
	s, _ := newTestServer(t, Config{Addr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0", Pprof: true,
		DrainDelay: time.Millisecond, ShutdownTimeout: time.Second})
	const secret = "opening /models/secret-model-v7.onnx: no such file"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.Run(ctx, func(ctx context.Context) error {
			<-ctx.Done()
			return errors.New(secret)
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	pub, err := s.Addr(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mctx, mcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer mcancel()
	internal, err := s.MetricsAddr(mctx)
	if err != nil {
		t.Fatal(err)
	}
	// Healthy comes just after the listeners open.
	for deadline := time.Now().Add(5 * time.Second); !s.Prober.IsHealthy(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("never healthy")
		}
	}
	s.Prober.NotReady("warm-up: " + secret)
	get := func(addr, path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	cases := []struct {
		listener, path string
		status         int
		has, hasNot    string
	}{
		{"public", "/metrics", 404, "not_found", "go_goroutines"},
		{"public", "/version", 404, "not_found", "abc"},
		{"public", "/debug/pprof/", 404, "not_found", "goroutine"},
		{"public", "/readyz", 503, "not_ready", "secret-model"},
		{"public", "/healthz", 200, "ok", ""},
		{"internal", "/metrics", 200, "go_goroutines", ""},
		{"internal", "/version", 200, "abc", ""},
		{"internal", "/debug/pprof/", 200, "goroutine", ""},
		{"internal", "/readyz", 503, "secret-model-v7.onnx", ""},
		{"internal", "/healthz", 200, "ok", ""},
	}
	for _, c := range cases {
		addr := pub.String()
		if c.listener == "internal" {
			addr = internal.String()
		}
		st, body := get(addr, c.path)
		if st != c.status || !strings.Contains(body, c.has) || (c.hasNot != "" && strings.Contains(body, c.hasNot)) {
			t.Errorf("%s %s: %d %.200q, want %d with %q and without %q", c.listener, c.path, st, body, c.status, c.has, c.hasNot)
		}
	}
}

// TestPprofOffByDefault: profiles need Pprof even on the internal listener.
func TestPprofOffByDefault(t *testing.T) {
	s, _ := newTestServer(t, Config{})
	rec := httptest.NewRecorder()
	s.Internal.ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/", nil))
	if rec.Code != 404 {
		t.Fatalf("pprof without Pprof: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	s.Internal.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("internal /metrics: %d", rec.Code)
	}
}
