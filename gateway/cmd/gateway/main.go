// Command gateway is Lookalike's public door: the shoppers' search API and
// web page, and the admin product API, in front of preprocess, embed and
// search (several instances each, balanced, with breakers and deadlines).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ardanlabs/conf/v3"

	"github.com/lookalike-dev/lookalike/gateway/internal/canary"
	"github.com/lookalike-dev/lookalike/gateway/internal/guard"
	"github.com/lookalike-dev/lookalike/gateway/internal/httpapi"
	"github.com/lookalike-dev/lookalike/gateway/internal/service"
	"github.com/lookalike-dev/lookalike/gateway/internal/upstream"
	"github.com/lookalike-dev/lookalike/shared/buildinfo"
	"github.com/lookalike-dev/lookalike/shared/logging"
	"github.com/lookalike-dev/lookalike/shared/safefetch"
	"github.com/lookalike-dev/lookalike/shared/server"
	"github.com/lookalike-dev/lookalike/shared/telemetry"
)

// commit is set at link time: -ldflags "-X main.commit=$(git rev-parse HEAD)".
var commit string

// config: every setting is an environment variable (named in env:) or a flag.
type config struct {
	Addr                 string        `conf:"env:GATEWAY_ADDR,default:127.0.0.1:8080,help:listen address"`
	MetricsAddr          string        `conf:"env:GATEWAY_METRICS_ADDR,default:127.0.0.1:9080,help:internal listener: /metrics /version /readyz details and pprof (never route it publicly; empty: off)"`
	Pprof                bool          `conf:"env:GATEWAY_PPROF,default:false,help:serve /debug/pprof/ on the internal listener"`
	LogLevel             string        `conf:"env:GATEWAY_LOG_LEVEL,default:info,help:debug info warn error"`
	PreprocessInstances  string        `conf:"env:PREPROCESS_URLS,default:http://127.0.0.1:8081,help:preprocess base URLs (comma-separated)"`
	EmbedInstances       string        `conf:"env:EMBED_URLS,default:http://127.0.0.1:8082,help:embed base URLs (comma-separated)"`
	SearchInstances      string        `conf:"env:SEARCH_URLS,default:http://127.0.0.1:8083,help:search base URLs (comma-separated)"`
	AdminKey             string        `conf:"env:LOOKALIKE_ADMIN_KEY,mask,help:admin bearer keys; several (comma-separated) allow rotation"`
	AdminKeyFile         string        `conf:"env:LOOKALIKE_ADMIN_KEY_FILE,help:file of admin keys one a line (a mounted Secret; re-read when it changes)"`
	Catalog              string        `conf:"env:GATEWAY_CATALOG,default:products,help:catalog alias queried and written"`
	CatalogDir           string        `conf:"env:CATALOG_DIR,help:folder that catalog image paths are relative to (empty: only image URLs are served)"`
	RequestTimeout       time.Duration `conf:"env:GATEWAY_REQUEST_TIMEOUT,default:10s,help:overall deadline of an API request"`
	PreprocessTimeout    time.Duration `conf:"env:GATEWAY_PREPROCESS_TIMEOUT,default:3s,help:one preprocess attempt"`
	EmbedTimeout         time.Duration `conf:"env:GATEWAY_EMBED_TIMEOUT,default:5s,help:one embed attempt"`
	SearchTimeout        time.Duration `conf:"env:GATEWAY_SEARCH_TIMEOUT,default:3s,help:one search attempt"`
	Retries              int           `conf:"env:GATEWAY_RETRIES,default:2,help:extra attempts per downstream call on another instance (-1: none)"`
	BreakerMinCalls      uint32        `conf:"env:GATEWAY_BREAKER_MIN_CALLS,default:10,help:calls an instance's breaker must see in its window before it may open"`
	BreakerFailureRatio  float64       `conf:"env:GATEWAY_BREAKER_FAILURE_RATIO,default:0.5,help:share of failed calls in the window that opens an instance's breaker (0..1]"`
	BreakerWindow        time.Duration `conf:"env:GATEWAY_BREAKER_WINDOW,default:10s,help:sliding window over which an instance's breaker counts calls"`
	BreakerOpen          time.Duration `conf:"env:GATEWAY_BREAKER_OPEN,default:5s,help:time a breaker stays open before a trial request"`
	ProbeInterval        time.Duration `conf:"env:GATEWAY_PROBE_INTERVAL,default:2s,help:readiness probe period per downstream instance"`
	ResolveInterval      time.Duration `conf:"env:GATEWAY_RESOLVE_INTERVAL,default:5s,help:re-resolution period of dns+ and dnssrv+ downstream URLs (headless Services)"`
	ModelsTTL            time.Duration `conf:"env:GATEWAY_MODELS_TTL,default:30s,help:cache time of embed's model list"`
	MaxUpload            int64         `conf:"env:GATEWAY_MAX_UPLOAD,default:10485760,help:most bytes of an uploaded image or multipart body"`
	MaxBody              int64         `conf:"env:GATEWAY_MAX_BODY,default:16777216,help:most bytes of any request body"`
	MaxInFlight          int           `conf:"env:GATEWAY_MAX_IN_FLIGHT,default:64,help:API requests served at once (more are shed with 429)"`
	QueueWait            time.Duration `conf:"env:GATEWAY_QUEUE_WAIT,default:50ms,help:how long a request may wait for a slot before 429"`
	RatePerSecond        float64       `conf:"env:GATEWAY_RATE,default:20,help:requests per second per client IP (0: off)"`
	RateBurst            int           `conf:"env:GATEWAY_RATE_BURST,default:40,help:burst per client IP"`
	AdminRate            float64       `conf:"env:GATEWAY_ADMIN_RATE,default:200,help:requests per second per admin key (0: off)"`
	AdminBurst           int           `conf:"env:GATEWAY_ADMIN_BURST,default:400,help:burst per admin key"`
	TrustedProxies       []string      `conf:"env:GATEWAY_TRUSTED_PROXIES,help:CIDR ranges or IPs of the proxies (the ingress) whose X-Forwarded-For is believed (comma-separated; empty: none)"`
	AdminAuthFailures    float64       `conf:"env:LOOKALIKE_ADMIN_AUTH_FAILURES,default:10,help:wrong admin keys allowed per client IP per minute before 429 (negative: no limit)"`
	AdminAuthBurst       int           `conf:"env:LOOKALIKE_ADMIN_AUTH_FAILURE_BURST,default:10,help:wrong admin keys a client IP may send at once"`
	FetchMaxBytes        int64         `conf:"env:GATEWAY_FETCH_MAX_BYTES,default:10485760,help:most bytes fetched from an image_url"`
	FetchTimeout         time.Duration `conf:"env:GATEWAY_FETCH_TIMEOUT,default:5s,help:time limit of an image_url fetch including redirects"`
	FetchAllowHosts      []string      `conf:"env:GATEWAY_FETCH_ALLOW_HOSTS,help:when set the only host names an image_url may name (whole names; comma-separated)"`
	DrainDelay           time.Duration `conf:"env:GATEWAY_DRAIN_DELAY,default:5s,help:time NotReady before the listener closes on SIGTERM"`
	ShutdownTimeout      time.Duration `conf:"env:GATEWAY_SHUTDOWN_TIMEOUT,default:20s,help:graceful shutdown bound"`
	CanaryEmbedInstances string        `conf:"env:CANARY_EMBED_URLS,help:embed base URLs of the canary model's own deployment (comma-separated; empty: EMBED_URLS serve it)"`
	CanaryModel          string        `conf:"env:CANARY_MODEL,help:model a canary start rolls out when the request names none"`
	CanaryShare          float64       `conf:"env:CANARY_SHARE,default:0.05,help:share of queries a live canary answers (0..1; sticky per Lookalike-Client-Id or client IP)"`
	CanaryShadowRate     float64       `conf:"env:CANARY_SHADOW_RATE,default:0.05,help:share of the split's stable queries also run on a live canary to compare the spaces (0..1)"`
	CanaryStateTTL       time.Duration `conf:"env:CANARY_STATE_TTL,default:2s,help:cache time of the rollout state (search aliases) for queries"`
}

func main() {
	log := logging.New(os.Stdout, "gateway", slog.LevelInfo)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == "canary" {
		// gateway canary report|start|serve|promote|rollback: a client of a
		// running gateway's rollout admin API (gateway/CANARY.md).
		code := canary.RunCLI(ctx, os.Args[2:], os.Stdout, os.Stderr, os.Getenv)
		stop()
		os.Exit(code)
	}
	if err := run(ctx, log); err != nil {
		log.Error("gateway stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger) error {
	// Config.
	log.Info("starting", "commit", commit)
	var cfg config
	help, err := conf.Parse("", &cfg)
	if err != nil {
		if errors.Is(err, conf.ErrHelpWanted) {
			fmt.Println(help)
			return nil
		}
		return fmt.Errorf("parsing config: %w", err)
	}
	log = logging.New(os.Stdout, "gateway", logging.ParseLevel(cfg.LogLevel))
	if out, err := conf.String(&cfg); err == nil {
		log.Info("config", "effective", out)
	}

	// Telemetry.
	info := buildinfo.Read("gateway", commit)
	tel, err := telemetry.Setup(ctx, telemetry.Options{Service: "gateway", Version: info.Version, Commit: info.Commit})
	if err != nil {
		return fmt.Errorf("setting up telemetry: %w", err)
	}

	// Dependencies.
	svc, err := service.New(service.Config{
		Preprocess:      service.Hop{URLs: upstream.SplitURLs(cfg.PreprocessInstances), Timeout: cfg.PreprocessTimeout},
		Embed:           service.Hop{URLs: upstream.SplitURLs(cfg.EmbedInstances), Timeout: cfg.EmbedTimeout},
		Search:          service.Hop{URLs: upstream.SplitURLs(cfg.SearchInstances), Timeout: cfg.SearchTimeout},
		Catalog:         cfg.Catalog,
		CatalogDir:      cfg.CatalogDir,
		AdminKeys:       cfg.AdminKey,
		AdminKeyFile:    cfg.AdminKeyFile,
		Retries:         cfg.Retries,
		BreakerMinCalls: cfg.BreakerMinCalls, BreakerFailureRatio: cfg.BreakerFailureRatio, BreakerWindow: cfg.BreakerWindow,
		BreakerOpen:   cfg.BreakerOpen,
		ProbeInterval: cfg.ProbeInterval, ResolveInterval: cfg.ResolveInterval,
		ModelsTTL: cfg.ModelsTTL,
		Fetch: safefetch.Options{MaxBytes: cfg.FetchMaxBytes, Timeout: cfg.FetchTimeout, AllowHosts: cfg.FetchAllowHosts,
			UserAgent: "lookalike-gateway/" + info.Version},
		Limits: httpapi.Limits{
			MaxUpload: cfg.MaxUpload, RequestTimeout: cfg.RequestTimeout, MaxInFlight: cfg.MaxInFlight, QueueWait: cfg.QueueWait,
			Rate:      guard.RateConfig{PerSecond: cfg.RatePerSecond, Burst: cfg.RateBurst},
			AdminRate: guard.RateConfig{PerSecond: cfg.AdminRate, Burst: cfg.AdminBurst},
		},
		Transport: tel.WrapTransport(telemetry.Transport()),
		Canary: service.Canary{
			Embed: service.Hop{URLs: upstream.SplitURLs(cfg.CanaryEmbedInstances), Timeout: cfg.EmbedTimeout},
			Model: cfg.CanaryModel, Share: cfg.CanaryShare, ShadowRate: cfg.CanaryShadowRate, StateTTL: cfg.CanaryStateTTL,
			Meter: tel.Meter("lookalike/gateway/canary"),
		},
		Meter: tel.Meter("lookalike/gateway"),

		TrustedProxies: cfg.TrustedProxies, AdminAuthFailures: cfg.AdminAuthFailures, AdminAuthFailureBurst: cfg.AdminAuthBurst,
	}, log)
	if err != nil {
		return fmt.Errorf("assembling the gateway: %w", err)
	}
	svc.Start(ctx)

	// Server.
	srv := server.New(server.Config{
		Addr: cfg.Addr, MetricsAddr: cfg.MetricsAddr, Pprof: cfg.Pprof, DrainDelay: cfg.DrainDelay,
		ShutdownTimeout: cfg.ShutdownTimeout, BodyLimit: cfg.MaxBody,
	}, log, tel, info)
	svc.Register(srv.Echo)

	// Run: ready once embed's model list has been read.
	return srv.Run(ctx, svc.Warmup, svc.Close)
}
