// Package server runs a service's echo server with the plumbing every
// Lookalike service shares: recover, request ids, OpenTelemetry server spans,
// RED metrics, one access-log line per request, the error envelope, the
// public /healthz and /readyz routes, an internal listener (/metrics,
// /version, /readyz with its reason, pprof when enabled) that no Ingress
// routes, and a bounded, draining shutdown.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/buildinfo"
	"github.com/lookalike-dev/lookalike/shared/telemetry"
)

// Config of the HTTP server.
type Config struct {
	// Addr is host:port to listen on (":0" picks a free port).
	Addr string
	// DrainDelay is how long the service stays up, NotReady, after SIGTERM
	// so load balancers stop sending before the listener closes.
	DrainDelay time.Duration
	// ShutdownTimeout bounds the graceful shutdown of in-flight requests.
	ShutdownTimeout time.Duration
	// BodyLimit caps request bodies in bytes (0: no limit here).
	BodyLimit int64
	// ReadTimeout and WriteTimeout bound one request (0: defaults 30 s / 60 s).
	ReadTimeout, WriteTimeout time.Duration
	// MetricsAddr, when set, is the internal listener: /metrics, /version,
	// /healthz, /readyz with the reason a service is not ready and, with
	// Pprof, /debug/pprof/. The public listener serves none of these but
	// /healthz and a /readyz without the reason. Never route it publicly.
	MetricsAddr string
	// Pprof serves /debug/pprof/ on the internal listener.
	Pprof bool
}

// Routes that are neither traced nor access-logged.
const (
	RouteHealthz = "/healthz"
	RouteReadyz  = "/readyz"
	RouteVersion = "/version"
	RouteMetrics = "/metrics"
)

// Server is a service's HTTP server.
type Server struct {
	// Echo serves the public routes.
	Echo *echo.Echo
	// Internal serves the internal listener's routes (tests mount it on
	// their own server).
	Internal http.Handler
	Prober   *Prober
	Info     buildinfo.Info

	cfg     Config
	log     *slog.Logger
	tel     *telemetry.Telemetry
	addr    chan net.Addr
	metAddr chan net.Addr
	dur     metric.Float64Histogram
}

// New builds the server with its middleware and operational routes.
func New(cfg Config, log *slog.Logger, tel *telemetry.Telemetry, info buildinfo.Info) *Server {
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = 30 * time.Second
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 60 * time.Second
	}
	s := &Server{Echo: echo.New(), Prober: NewProber(), Info: info, cfg: cfg, log: log, tel: tel,
		addr: make(chan net.Addr, 1), metAddr: make(chan net.Addr, 1)}
	e := s.Echo
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	var err error
	s.dur, err = tel.Meter("lookalike/server").Float64Histogram("lookalike.http.server.duration",
		metric.WithUnit("s"), metric.WithDescription("HTTP server request duration by route, method and status."),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	if err != nil {
		log.Error("creating request duration histogram", "err", err)
	}
	e.Use(middleware.RequestIDWithConfig(middleware.RequestIDConfig{
		Skipper: func(c echo.Context) bool { return false },
	}))
	e.Use(s.observe)
	e.Use(s.recoverPanic)
	if cfg.BodyLimit > 0 {
		e.Use(bodyLimit(cfg.BodyLimit))
	}
	e.GET(RouteHealthz, s.healthz)
	e.GET(RouteReadyz, s.readyz)
	s.Internal = s.internalMux()
	return s
}

// internalMux holds what operators and Prometheus read and outsiders must
// not: build details, metrics, why a service is not ready, profiles.
func (s *Server) internalMux() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+RouteMetrics, s.tel.MetricsHandler())
	mux.HandleFunc("GET "+RouteVersion, func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, s.Info) })
	mux.HandleFunc("GET "+RouteHealthz, func(w http.ResponseWriter, _ *http.Request) {
		if !s.Prober.IsHealthy() {
			apierror.Write(w, apierror.New(http.StatusServiceUnavailable, apierror.CodeUnavailable, "not healthy"))
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET "+RouteReadyz, func(w http.ResponseWriter, _ *http.Request) {
		if ok, why := s.Prober.IsReady(); !ok {
			apierror.Write(w, apierror.New(http.StatusServiceUnavailable, apierror.CodeNotReady, "not ready: %s", why))
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	if s.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func quietRoute(p string) bool {
	return p == RouteHealthz || p == RouteReadyz || p == RouteMetrics || p == RouteVersion
}

func (s *Server) healthz(c echo.Context) error {
	if !s.Prober.IsHealthy() {
		return apierror.New(http.StatusServiceUnavailable, apierror.CodeUnavailable, "not healthy")
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers load balancers and callers' probes. Why a service is not
// ready (warm-up errors name files, hosts and models) stays on the
// internal listener and in the logs.
func (s *Server) readyz(c echo.Context) error {
	if ok, _ := s.Prober.IsReady(); !ok {
		return apierror.New(http.StatusServiceUnavailable, apierror.CodeNotReady, "not ready")
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

// recoverPanic turns a handler panic into a 500 with a logged stack.
func (s *Server) recoverPanic(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				err = fmt.Errorf("panic in %s %s: %v", c.Request().Method, c.Path(), r)
			}
		}()
		return next(c)
	}
}

func bodyLimit(n int64) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			if req.ContentLength > n {
				return apierror.New(http.StatusRequestEntityTooLarge, apierror.CodePayloadTooLarge, "request body of %d bytes is over the %d byte limit", req.ContentLength, n)
			}
			req.Body = http.MaxBytesReader(c.Response(), req.Body, n)
			return next(c)
		}
	}
}

const (
	keyErrCode  = "lookalike.error_code"
	keyErrCause = "lookalike.error_cause"
)

// observe traces the request, records its duration and writes one log line.
// It commits errors itself so the status is known when it logs.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	tracer := s.tel.Tracer("lookalike/server")
	return func(c echo.Context) error {
		req := c.Request()
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		start := time.Now()
		ctx := req.Context()
		var span trace.Span
		quiet := quietRoute(route)
		if !quiet {
			ctx = s.tel.Propagator.Extract(ctx, propagation.HeaderCarrier(req.Header))
			ctx, span = tracer.Start(ctx, req.Method+" "+route, trace.WithSpanKind(trace.SpanKindServer),
				trace.WithAttributes(semconv.HTTPRequestMethodKey.String(req.Method), semconv.HTTPRoute(route), semconv.URLPath(req.URL.Path)))
			defer span.End()
			c.SetRequest(req.WithContext(ctx))
		}
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		status := c.Response().Status
		elapsed := time.Since(start)
		if s.dur != nil {
			s.dur.Record(ctx, elapsed.Seconds(), metric.WithAttributes(
				attribute.String("route", route), attribute.String("method", req.Method), attribute.Int("status", status)))
		}
		if quiet {
			return nil
		}
		span.SetAttributes(semconv.HTTPResponseStatusCode(status))
		attrs := []any{"method", req.Method, "route", route, "path", req.URL.Path, "status", status,
			"duration_ms", float64(elapsed.Microseconds()) / 1000, "request_id", c.Response().Header().Get(echo.HeaderXRequestID),
			"bytes_in", req.ContentLength, "bytes_out", c.Response().Size}
		if code, ok := c.Get(keyErrCode).(string); ok {
			attrs = append(attrs, "error_code", code)
		}
		level := slog.LevelInfo
		if status >= 500 {
			level = slog.LevelError
			span.SetStatus(codes.Error, http.StatusText(status))
			if cause, ok := c.Get(keyErrCause).(error); ok {
				attrs = append(attrs, "err", cause.Error())
				span.RecordError(cause)
			}
		}
		s.log.Log(ctx, level, "request", attrs...)
		return nil
	}
}

// handleError writes the envelope. The access log line carries the code.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	e := ToAPIError(err)
	e.RequestID = c.Response().Header().Get(echo.HeaderXRequestID)
	c.Set(keyErrCode, e.Code)
	c.Set(keyErrCause, err)
	if e.RetryAfter > 0 {
		c.Response().Header().Set("Retry-After", fmt.Sprint(e.RetryAfter))
	}
	var werr error
	if c.Request().Method == http.MethodHead {
		werr = c.NoContent(e.Status)
	} else {
		werr = c.JSON(e.Status, apierror.Envelope{Error: e})
	}
	if werr != nil {
		s.log.ErrorContext(c.Request().Context(), "writing error response", "err", werr)
	}
}

// ToAPIError maps any handler error to an envelope error. Unknown errors
// become a 500 whose message hides the cause.
func ToAPIError(err error) *apierror.Error {
	if e, ok := apierror.As(err); ok {
		cp := *e
		return &cp
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		msg := http.StatusText(he.Code)
		if m, ok := he.Message.(string); ok && m != "" {
			msg = m
		}
		return &apierror.Error{Status: he.Code, Code: codeForStatus(he.Code), Message: msg}
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return apierror.New(http.StatusRequestEntityTooLarge, apierror.CodePayloadTooLarge, "request body is over the %d byte limit", mbe.Limit)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return apierror.New(http.StatusGatewayTimeout, apierror.CodeDeadlineExceeded, "the request deadline passed")
	}
	return apierror.New(http.StatusInternalServerError, apierror.CodeInternal, "internal error")
}

func codeForStatus(status int) string {
	switch status {
	case http.StatusNotFound:
		return apierror.CodeNotFound
	case http.StatusMethodNotAllowed:
		return apierror.CodeMethodNotAllowed
	case http.StatusRequestEntityTooLarge:
		return apierror.CodePayloadTooLarge
	case http.StatusUnsupportedMediaType:
		return apierror.CodeUnsupportedMedia
	case http.StatusUnauthorized:
		return apierror.CodeUnauthorized
	case http.StatusForbidden:
		return apierror.CodeForbidden
	case http.StatusTooManyRequests:
		return apierror.CodeRateLimited
	case http.StatusServiceUnavailable:
		return apierror.CodeUnavailable
	}
	if status >= 500 {
		return apierror.CodeInternal
	}
	return apierror.CodeBadRequest
}

// Addr waits for the listener and returns its address (useful with ":0").
func (s *Server) Addr(ctx context.Context) (net.Addr, error) { return waitAddr(ctx, s.addr) }

// MetricsAddr waits for the internal listener and returns its address; it
// waits until ctx ends when there is none.
func (s *Server) MetricsAddr(ctx context.Context) (net.Addr, error) { return waitAddr(ctx, s.metAddr) }

func waitAddr(ctx context.Context, ch chan net.Addr) (net.Addr, error) {
	select {
	case a := <-ch:
		ch <- a
		return a, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Run serves until ctx is cancelled (SIGTERM) or the server fails. It marks
// the prober Healthy once listening and Ready once warmup succeeds (retried
// with backoff; nil warmup means ready at once). On cancel it goes NotReady,
// waits DrainDelay, shuts down within ShutdownTimeout, runs closers in order
// and flushes telemetry.
func (s *Server) Run(ctx context.Context, warmup func(context.Context) error, closers ...func(context.Context) error) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", s.cfg.Addr, err)
	}
	s.addr <- ln.Addr()
	hs := &http.Server{Handler: s.Echo, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: s.cfg.ReadTimeout,
		WriteTimeout: s.cfg.WriteTimeout, IdleTimeout: 120 * time.Second,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 2)
	go func() { errc <- hs.Serve(ln) }()

	var internal *http.Server
	if s.cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", s.cfg.MetricsAddr)
		if err != nil {
			_ = hs.Close()
			return fmt.Errorf("listening on %s (internal: metrics): %w", s.cfg.MetricsAddr, err)
		}
		s.metAddr <- mln.Addr()
		internal = &http.Server{Handler: s.Internal, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
			ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
		go func() {
			if err := internal.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("internal listener on %s: %w", mln.Addr(), err)
			}
		}()
		s.log.Info("internal listener started", "addr", mln.Addr().String(), "pprof", s.cfg.Pprof)
	}
	s.Prober.Healthy()
	s.log.Info("listening", "addr", ln.Addr().String(), "version", s.Info.Version, "commit", s.Info.Commit)

	warmCtx, stopWarm := context.WithCancel(ctx)
	defer stopWarm()
	go s.warm(warmCtx, warmup)

	select {
	case err := <-errc:
		s.Prober.NotReady("server failed")
		_ = hs.Close()
		if internal != nil {
			_ = internal.Close()
		}
		s.shutdownDeps(closers)
		return fmt.Errorf("serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	stopWarm()
	s.Prober.NotReady("shutting down")
	s.log.Info("shutdown started: not ready, draining", "drain_delay", s.cfg.DrainDelay.String())
	time.Sleep(s.cfg.DrainDelay)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	if err := hs.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("graceful shutdown: %w", err))
		_ = hs.Close()
	}
	if internal != nil {
		_ = internal.Close()
	}
	errs = append(errs, s.shutdownDeps(closers))
	s.log.Info("shutdown complete")
	return errors.Join(errs...)
}

func (s *Server) warm(ctx context.Context, warmup func(context.Context) error) {
	if warmup == nil {
		s.Prober.Ready()
		return
	}
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		start := time.Now()
		err := warmup(ctx)
		if err == nil {
			s.Prober.Ready()
			s.log.Info("warm-up done: ready", "attempts", attempt, "took_ms", time.Since(start).Milliseconds())
			return
		}
		if ctx.Err() != nil {
			return
		}
		s.Prober.NotReady("warm-up: " + err.Error())
		s.log.Warn("warm-up failed, retrying", "attempt", attempt, "err", err, "retry_in", backoff.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (s *Server) shutdownDeps(closers []func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	for _, c := range closers {
		if err := c(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.tel.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("flushing telemetry: %w", err))
	}
	return errors.Join(errs...)
}
