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

	"github.com/lookalike-dev/lookalike/gateway/internal/canary"
	"github.com/lookalike-dev/lookalike/gateway/internal/guard"
	"github.com/lookalike-dev/lookalike/gateway/internal/httpapi"
	"github.com/lookalike-dev/lookalike/gateway/internal/pipeline"
	"github.com/lookalike-dev/lookalike/gateway/internal/productimage"
	"github.com/lookalike-dev/lookalike/gateway/internal/upstream"
	"github.com/lookalike-dev/lookalike/shared/adminkey"
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
	// AdminAuthFailures per minute (burst AdminAuthFailureBurst) are the
	// wrong admin keys a client IP may send (0: defaults; negative: no limit).
	AdminAuthFailures     float64
	AdminAuthFailureBurst int
	// TrustedProxies are the CIDR ranges (or IPs) of the proxies in front
	// of the gateway whose X-Forwarded-For is believed; empty: none, the
	// client is the connection's peer.
	TrustedProxies []string
	// Retries is the extra attempts per downstream call (negative: none).
	Retries int
	// A breaker opens for BreakerOpen when BreakerFailureRatio of the calls
	// in BreakerWindow failed, once BreakerMinCalls were seen (upstream.Options).
	BreakerMinCalls     uint32
	BreakerFailureRatio float64
	BreakerWindow       time.Duration
	BreakerOpen         time.Duration
	// ResolveInterval is how often dns+ / dnssrv+ downstream URLs are
	// re-resolved.
	ResolveInterval time.Duration
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
	// Chooser picks the model per query (nil: as requested). The canary
	// router replaces it unless Canary.Off.
	Chooser httpapi.ModelChooser
	// Canary configures model rollouts (gateway/CANARY.md).
	Canary Canary
	// Meter, when set, receives the upstream readiness and breaker gauges.
	Meter metric.Meter
}

// Canary configures model rollouts: the canary model's own embed
// deployment (if any), the traffic share and the shadow comparison.
type Canary struct {
	// Off leaves the rollout machinery out: queries use the requested or
	// default model and writes go to one space.
	Off bool
	// Embed is the canary model's own embed deployment (no URLs: the
	// stable embed deployment serves the canary model too).
	Embed Hop
	// Model is the model a start without one rolls out.
	Model string
	// Share of queries a live canary answers; ShadowRate of the split's
	// stable queries also run on the canary to compare the spaces.
	Share, ShadowRate float64
	// StateTTL is how long the rollout state (search aliases) is cached.
	StateTTL time.Duration
	// Meter exports the rollout metrics (nil: none).
	Meter metric.Meter
}

// Service is the assembled gateway.
type Service struct {
	Pools    []*upstream.Pool
	Pipeline *pipeline.Pipeline
	// Canary routes queries and writes between the stable and canary
	// models (nil with Config.Canary.Off).
	Canary *canary.Router
	Deps   httpapi.Deps
	log    *slog.Logger
	// clientIP finds a request's client IP (rate limits, the split).
	clientIP echo.IPExtractor
}

// New assembles the gateway.
func New(cfg Config, log *slog.Logger) (*Service, error) {
	if cfg.Catalog == "" {
		cfg.Catalog = "products"
	}
	if !searchv1.ValidName(cfg.Catalog) {
		return nil, fmt.Errorf("catalog name %q is not valid", cfg.Catalog)
	}
	keys, err := adminkey.New(adminkey.Config{Keys: cfg.AdminKeys, File: cfg.AdminKeyFile,
		FailuresPerMinute: cfg.AdminAuthFailures, FailureBurst: cfg.AdminAuthFailureBurst}, log)
	if err != nil {
		return nil, err
	}
	if keys.Count() == 0 {
		log.Warn("no admin key configured: the admin API refuses every request (set LOOKALIKE_ADMIN_KEY or LOOKALIKE_ADMIN_KEY_FILE)")
	}
	clientIP, err := guard.ClientIP(cfg.TrustedProxies)
	if err != nil {
		return nil, err
	}
	s := &Service{log: log, clientIP: clientIP}
	pool := func(name string, h Hop) (*upstream.Pool, error) {
		p, err := upstream.New(upstream.Options{
			Name: name, URLs: h.URLs, Transport: cfg.Transport, AttemptTimeout: h.Timeout,
			Retries: cfg.Retries, Retryable: upstream.AllRequests, ProbeInterval: cfg.ProbeInterval,
			BreakerMinCalls: cfg.BreakerMinCalls, BreakerFailureRatio: cfg.BreakerFailureRatio,
			BreakerWindow: cfg.BreakerWindow, BreakerOpen: cfg.BreakerOpen, ResolveInterval: cfg.ResolveInterval, Log: log,
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
		// The gateway never reads the perceptual hash (the indexer does).
		Preprocess: &preprocessv1.Client{BaseURL: pre.BaseURL(), HTTP: pre, SkipPHash: true},
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
		Chooser: cfg.Chooser, Limits: cfg.Limits, Log: log, ClientIP: clientIP}
	if !cfg.Canary.Off {
		// The router is the API's chooser (the split), its backend (each
		// arm's embedder and space; dual writes) and mounts /v1/canary.
		if s.Canary, err = s.newCanary(cfg, pool); err != nil {
			return nil, err
		}
		s.Deps.Pipeline, s.Deps.Chooser, s.Deps.Mount = s.Canary, s.Canary, s.Canary.Mount
	}
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
	if s.Canary != nil {
		// Best effort: queries see no canary until the aliases can be read.
		if st, err := s.Canary.State(ctx, true); err != nil {
			s.log.WarnContext(ctx, "model rollout state not read yet", "err", err)
		} else {
			s.log.InfoContext(ctx, "model rollout", "phase", st.Phase, "stable", st.Stable, "canary", st.Canary)
		}
	}
	return nil
}

// Close waits for canary shadow queries and releases the catalog folder.
func (s *Service) Close(ctx context.Context) error {
	var err error
	if s.Canary != nil {
		err = s.Canary.Close(ctx)
	}
	return errors.Join(err, s.Deps.Images.Close())
}

// newCanary builds the rollout router over the stable pipeline plus, when
// the canary model has its own embed deployment, a pipeline through it.
func (s *Service) newCanary(cfg Config, pool func(string, Hop) (*upstream.Pool, error)) (*canary.Router, error) {
	backends := []canary.Backend{s.Pipeline}
	if len(cfg.Canary.Embed.URLs) > 0 {
		emb, err := pool("embed-canary", cfg.Canary.Embed)
		if err != nil {
			return nil, err
		}
		p := s.Pipeline
		backends = append(backends, &pipeline.Pipeline{Preprocess: p.Preprocess, Search: p.Search,
			Embed: &embedv1.Client{BaseURL: emb.BaseURL(), HTTP: emb}, Catalog: p.Catalog, ModelsTTL: p.ModelsTTL})
	}
	// Alias reads and changes go through their own pool, so they never
	// count against the query path's breakers.
	ctl, err := pool("search-control", cfg.Search)
	if err != nil {
		return nil, err
	}
	m, err := canary.NewMetrics(cfg.Canary.Meter)
	if err != nil {
		return nil, fmt.Errorf("canary metrics: %w", err)
	}
	return canary.New(canary.Config{
		Catalog: s.Pipeline.Catalog, Share: cfg.Canary.Share, Model: cfg.Canary.Model, ShadowRate: cfg.Canary.ShadowRate,
		StateTTL: cfg.Canary.StateTTL, ClientIP: s.clientIP,
	}, backends, canary.SearchSpaces{Client: &searchv1.Client{BaseURL: ctl.BaseURL(), HTTP: ctl}}, m, s.log)
}
