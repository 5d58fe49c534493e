// Package gatewaytest starts a whole gateway for tests: the real service
// assembly and shared/server plumbing, in front of in-process fake
// downstreams (package fakes), with the logs captured.
package gatewaytest

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/lookalike-dev/lookalike/gateway/internal/httpapi"
	"github.com/lookalike-dev/lookalike/gateway/internal/service"
	"github.com/lookalike-dev/lookalike/shared/buildinfo"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1/embedv1test"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1/preprocessv1test"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1/searchv1test"
	"github.com/lookalike-dev/lookalike/shared/logging"
	"github.com/lookalike-dev/lookalike/shared/server"
	"github.com/lookalike-dev/lookalike/shared/telemetry"
)

// AdminKey is the admin key of a test gateway.
const AdminKey = "test-admin-key-0123456789abcdef"

// Logs is a concurrency-safe log buffer.
type Logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns everything logged so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Env is a running gateway and its fake downstreams.
type Env struct {
	URL        string
	Server     *server.Server
	Service    *service.Service
	Preprocess *preprocessv1test.Server
	Embed      *embedv1test.Server
	Search     *searchv1test.Server
	PreSrv     *httptest.Server
	EmbedSrv   *httptest.Server
	SearchSrv  *httptest.Server
	Logs       *Logs
}

// ModelID is the test embed's only model.
const ModelID = "fake-v1"

// Spec is the preprocessing the test model publishes (deliberately not
// ImageNet's, so a test can see the gateway passes the model's spec on).
func Spec() preprocessv1.Spec {
	return preprocessv1.Spec{Width: 16, Height: 16, ResizeMode: preprocessv1.ResizeSquash, Interpolation: "nearest",
		Scale: 1.0 / 255, Mean: [3]float32{0.5, 0.5, 0.5}, Std: [3]float32{0.5, 0.5, 0.5},
		ChannelOrder: "RGB", Layout: "NCHW", DType: "float32"}
}

// Model is the test model's spec.
func Model() embedv1.ModelSpec { return embedv1test.Model(ModelID, 3*16*16, Spec()) }

// Options adjust a test gateway.
type Options struct {
	// Config is edited before the service is built (URLs are already set).
	Config func(*service.Config)
	// CatalogDir serves product images from there.
	CatalogDir string
	// ExtraPreprocessURLs etc. are added to the downstream lists.
	ExtraPreprocessURLs, ExtraEmbedURLs, ExtraSearchURLs []string
	// NoProbe leaves readiness probing off: every instance counts as ready.
	NoProbe bool
	// ExtraModels are served by the embed double beside Model() (a canary's).
	ExtraModels []embedv1.ModelSpec
}

// Start runs a gateway for t.
func Start(t testing.TB, o Options) *Env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	env := &Env{Preprocess: preprocessv1test.New(), Embed: embedv1test.New(append([]embedv1.ModelSpec{Model()}, o.ExtraModels...)...), Search: searchv1test.New(), Logs: &Logs{}}
	env.PreSrv = httptest.NewServer(env.Preprocess.Handler())
	env.EmbedSrv = httptest.NewServer(env.Embed.Handler())
	env.SearchSrv = httptest.NewServer(env.Search.Handler())
	t.Cleanup(env.PreSrv.Close)
	t.Cleanup(env.EmbedSrv.Close)
	t.Cleanup(env.SearchSrv.Close)

	log := logging.New(env.Logs, "gateway", -4) // debug: capture everything
	tel, err := telemetry.Setup(ctx, telemetry.Options{Service: "gateway", Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatalf("telemetry: %v", err)
	}
	cfg := service.Config{
		Preprocess: service.Hop{URLs: append([]string{env.PreSrv.URL}, o.ExtraPreprocessURLs...), Timeout: 2 * time.Second},
		Embed:      service.Hop{URLs: append([]string{env.EmbedSrv.URL}, o.ExtraEmbedURLs...), Timeout: 2 * time.Second},
		Search:     service.Hop{URLs: append([]string{env.SearchSrv.URL}, o.ExtraSearchURLs...), Timeout: 2 * time.Second},
		CatalogDir: o.CatalogDir,
		AdminKeys:  AdminKey,
		Transport:  tel.WrapTransport(telemetry.Transport()),
		Meter:      tel.Meter("lookalike/gateway"),
		Limits:     httpapi.Limits{RequestTimeout: 5 * time.Second},
	}
	cfg.Fetch.AllowPrivate = true // test image URLs live on loopback
	if o.Config != nil {
		o.Config(&cfg)
	}
	svc, err := service.New(cfg, log)
	if err != nil {
		t.Fatalf("service: %v", err)
	}
	srv := server.New(server.Config{Addr: "127.0.0.1:0", BodyLimit: 32 << 20}, log, tel, buildinfo.Read("gateway", "test"))
	svc.Register(srv.Echo)
	if !o.NoProbe {
		svc.Start(ctx)
	}
	hs := httptest.NewServer(srv.Echo)
	t.Cleanup(hs.Close)
	env.URL, env.Server, env.Service = hs.URL, srv, svc
	return env
}

// Do sends a request with an optional admin key.
func (e *Env) Do(t testing.TB, method, path, contentType string, body []byte, key string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, e.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}
