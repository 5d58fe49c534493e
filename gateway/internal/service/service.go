// Package service assembles the gateway from its configuration: one
// balanced, guarded upstream pool per downstream, the contract clients on
// top of them, the query pipeline, the SSRF-safe fetcher, product images,
// admin keys and the HTTP API. main and the tests build it the same way.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/metric"

	"github.com/lookalike-dev/lookalike/gateway/internal/adminauth"
	"github.com/lookalike-dev/lookalike/gateway/internal/httpapi"
	"github.com/lookalike-dev/lookalike/gateway/internal/pipeline"
	"github.com/lookalike-dev/lookalike/gateway/internal/productimage"
	"github.com/lookalike-dev/lookalike/gateway/internal/upstream"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
	"github.com/lookalike-dev/lookalike/shared/safefetch"
)

// Hop is the resilience setting of one downstream.
type Hop struct {
	URLs []string
	// Timeout bounds one attempt; the request deadline still wins.
	Timeout time.Duration
}

// Config is everything the gateway needs beyond its listener.
type Config struct {
	Preprocess, Embed, Search Hop
	// Catalog is the catalog alias queried and written ("products").
	Catalog string
	// CatalogDir is where catalog image paths are resolved for product
	// images ("" serves only image URLs).
	CatalogDir string
	// AdminKeys (comma-separated) and AdminKeyFile hold the admin keys.
	AdminKeys    string
	AdminKeyFile string
	// Retries is the extra attempts per downstream call (negative: none).
	Retries int
	// BreakerFailures consecutive failures open a breaker for BreakerOpen.
	BreakerFailures uint32
	BreakerOpen     time.Duration
	// ProbeInterval is how often instances' /readyz is probed.
	ProbeInterval time.Duration
	// ModelsTTL is how long embed's model list is cached.
	ModelsTTL time.Duration
	// Fetch configures image_url fetching.
	Fetch safefetch.Options
	// Limits bound requests.
	Limits httpapi.Limits
	// Transport carries downstream calls (traced in production); nil is
	// http.DefaultTransport.
	Transport http.RoundTripper
	// Chooser picks the model per query (nil: as requested).
	Chooser httpapi.ModelChooser
	// Meter, when set, receives the upstream readiness and breaker gauges.
	Meter metric.Meter
}

// Service is the assembled gateway.
type Service struct {
	Pools    []*upstream.Pool
	Pipeline *pipeline.Pipeline
	Deps     httpapi.Deps
	log      *slog.Logger
}

// New assembles the gateway.
func New(cfg Config, log *slog.Logger) (*Service, error) {
	if cfg.Catalog == "" {
		cfg.Catalog = "products"
	}
	if !searchv1.ValidName(cfg.Catalog) {
		return nil, fmt.Errorf("catalog name %q is not valid", cfg.Catalog)
	}
	keys, err := adminauth.New(cfg.AdminKeys, cfg.AdminKeyFile, log)
	if err != nil {
		return nil, err
	}
	if keys.Count() == 0 {
		log.Warn("no admin key configured: the admin API refuses every request (set LOOKALIKE_ADMIN_KEY or LOOKALIKE_ADMIN_KEY_FILE)")
	}
	s := &Service{log: log}
	pool := func(name string, h Hop) (*upstream.Pool, error) {
		p, err := upstream.New(upstream.Options{
			Name: name, URLs: h.URLs, Transport: cfg.Transport, AttemptTimeout: h.Timeout,
			Retries: cfg.Retries, Retryable: upstream.AllRequests, ProbeInterval: cfg.ProbeInterval,
			BreakerFailures: cfg.BreakerFailures, BreakerOpen: cfg.BreakerOpen, Log: log,
		})
		if err != nil {
			return nil, err
		}
		s.Pools = append(s.Pools, p)
		return p, nil
	}
	// Every downstream call is safe to repeat: preprocess and embed are pure
	// functions, search reads are reads, and writes are idempotent upserts
	// keyed by SKU (DESIGN.md invariant 2).
	pre, err := pool("preprocess", cfg.Preprocess)
	if err != nil {
		return nil, err
	}
	emb, err := pool("embed", cfg.Embed)
	if err != nil {
		return nil, err
	}
	srch, err := pool("search", cfg.Search)
	if err != nil {
		return nil, err
	}
	s.Pipeline = &pipeline.Pipeline{
		Preprocess: &preprocessv1.Client{BaseURL: pre.BaseURL(), HTTP: pre},
		Embed:      &embedv1.Client{BaseURL: emb.BaseURL(), HTTP: emb},
		Search:     &searchv1.Client{BaseURL: srch.BaseURL(), HTTP: srch},
		Catalog:    cfg.Catalog,
		ModelsTTL:  cfg.ModelsTTL,
	}
	if cfg.Meter != nil {
		if err := s.registerMetrics(cfg.Meter); err != nil {
			return nil, err
		}
	}
	fetcher := safefetch.New(cfg.Fetch)
	images, err := productimage.New(cfg.CatalogDir, fetcher, cfg.Fetch.MaxBytes)
	if err != nil {
		return nil, err
	}
	s.Deps = httpapi.Deps{Pipeline: s.Pipeline, Fetcher: fetcher, Images: images, Keys: keys,
		Chooser: cfg.Chooser, Limits: cfg.Limits, Log: log}
	return s, nil
}

// Register adds the API to e.
func (s *Service) Register(e *echo.Echo) { httpapi.Register(e, s.Deps) }

// Start probes the downstream instances in the background until ctx ends.
func (s *Service) Start(ctx context.Context) {
	for _, p := range s.Pools {
		p.Start(ctx)
	}
}

// Warmup succeeds once embed's model list has been read, so the first
// query does not pay for it and a wrong EMBED_URLS shows at start.
func (s *Service) Warmup(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	models, err := s.Pipeline.Models(ctx)
	if err != nil {
		return fmt.Errorf("reading embed's models: %w", err)
	}
	ids := make([]string, len(models))
	for i, m := range models {
		ids[i] = m.ID
	}
	s.log.InfoContext(ctx, "embed models", "models", ids)
	return nil
}

// Close releases the catalog folder.
func (s *Service) Close(context.Context) error {
	return errors.Join(s.Deps.Images.Close())
}
