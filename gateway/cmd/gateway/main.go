// Command gateway is Lookalike's public door: the shoppers' search API and
// web page, and the admin product API, in front of preprocess, embed and
// search (several instances each, balanced, with breakers and deadlines).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/lookalike-dev/lookalike/gateway/internal/guard"
	"github.com/lookalike-dev/lookalike/gateway/internal/httpapi"
	"github.com/lookalike-dev/lookalike/gateway/internal/service"
	"github.com/lookalike-dev/lookalike/gateway/internal/upstream"
	"github.com/lookalike-dev/lookalike/shared/logging"
	"github.com/lookalike-dev/lookalike/shared/safefetch"
	"github.com/lookalike-dev/lookalike/shared/server"
	"github.com/lookalike-dev/lookalike/shared/subcommand"
	"github.com/lookalike-dev/lookalike/shared/telemetry"
)

// sharedEnv are the suite-wide variables the gateway reads, with its own
// names for them.
var sharedEnv = map[string]string{
	"PREPROCESS_URLS":                    "GATEWAY_PREPROCESS_URLS",
	"EMBED_URLS":                         "GATEWAY_EMBED_URLS",
	"SEARCH_URLS":                        "GATEWAY_SEARCH_URLS",
	"LOOKALIKE_ADMIN_KEY":                "GATEWAY_ADMIN_KEY",
	"LOOKALIKE_ADMIN_KEY_FILE":           "GATEWAY_ADMIN_KEY_FILE",
	"CATALOG_DIR":                        "GATEWAY_CATALOG_DIR",
	"LOOKALIKE_ADMIN_AUTH_FAILURES":      "GATEWAY_ADMIN_AUTH_FAILURES",
	"LOOKALIKE_ADMIN_AUTH_FAILURE_BURST": "GATEWAY_ADMIN_AUTH_FAILURE_BURST",
	"CANARY_EMBED_URLS":                  "GATEWAY_CANARY_EMBED_URLS",
	"CANARY_MODEL":                       "GATEWAY_CANARY_MODEL",
	"CANARY_SHARE":                       "GATEWAY_CANARY_SHARE",
	"CANARY_SHADOW_RATE":                 "GATEWAY_CANARY_SHADOW_RATE",
	"CANARY_STATE_TTL":                   "GATEWAY_CANARY_STATE_TTL",
}

// commit is set at link time: -ldflags "-X main.commit=$(git rev-parse HEAD)".
var commit string

// config: every setting is a GATEWAY_ environment variable or a flag; the
// suite-wide names in sharedEnv work too.
type config struct {
	server.Settings
	PreprocessInstances  string        `conf:"env:PREPROCESS_URLS,default:http://127.0.0.1:8081,help:preprocess base URLs (comma-separated)"`
	EmbedInstances       string        `conf:"env:EMBED_URLS,default:http://127.0.0.1:8082,help:embed base URLs (comma-separated)"`
	SearchInstances      string        `conf:"env:SEARCH_URLS,default:http://127.0.0.1:8083,help:search base URLs (comma-separated)"`
	AdminKey             string        `conf:"mask,help:admin bearer keys; several (comma-separated) allow rotation"`
	AdminKeyFile         string        `conf:"help:file of admin keys one a line (a mounted Secret; re-read when it changes)"`
	Catalog              string        `conf:"default:products,help:catalog alias queried and written"`
	CatalogDir           string        `conf:"help:folder that catalog image paths are relative to (empty: only image URLs are served)"`
	RequestTimeout       time.Duration `conf:"default:10s,help:overall deadline of an API request"`
	PreprocessTimeout    time.Duration `conf:"default:3s,help:one preprocess attempt"`
	EmbedTimeout         time.Duration `conf:"default:5s,help:one embed attempt"`
	SearchTimeout        time.Duration `conf:"default:3s,help:one search attempt"`
	Retries              int           `conf:"default:2,help:extra attempts per downstream call on another instance (-1: none)"`
	BreakerMinCalls      uint32        `conf:"default:10,help:calls an instance's breaker must see in its window before it may open"`
	BreakerFailureRatio  float64       `conf:"default:0.5,help:share of failed calls in the window that opens an instance's breaker (0..1]"`
	BreakerWindow        time.Duration `conf:"default:10s,help:sliding window over which an instance's breaker counts calls"`
	BreakerOpen          time.Duration `conf:"default:5s,help:time a breaker stays open before a trial request"`
	ProbeInterval        time.Duration `conf:"default:2s,help:readiness probe period per downstream instance"`
	ResolveInterval      time.Duration `conf:"default:5s,help:re-resolution period of dns+ and dnssrv+ downstream URLs (headless Services)"`
	ModelsTTL            time.Duration `conf:"default:30s,help:cache time of embed's model list"`
	MaxUpload            int64         `conf:"default:10485760,help:most bytes of an uploaded image or multipart body"`
	MaxInFlight          int           `conf:"default:64,help:API requests served at once (more are shed with 429)"`
	QueueWait            time.Duration `conf:"default:50ms,help:how long a request may wait for a slot before 429"`
	RatePerSecond        float64       `conf:"env:RATE,default:20,help:requests per second per client IP (0: off)"`
	RateBurst            int           `conf:"default:40,help:burst per client IP"`
	AdminRate            float64       `conf:"default:200,help:requests per second per admin key (0: off)"`
	AdminBurst           int           `conf:"default:400,help:burst per admin key"`
	TrustedProxies       []string      `conf:"help:CIDR ranges or IPs of the proxies (the ingress) whose X-Forwarded-For is believed (comma-separated; empty: none)"`
	AdminAuthFailures    float64       `conf:"default:10,help:wrong admin keys allowed per client IP per minute before 429 (negative: no limit)"`
	AdminAuthBurst       int           `conf:"env:ADMIN_AUTH_FAILURE_BURST,default:10,help:wrong admin keys a client IP may send at once"`
	FetchMaxBytes        int64         `conf:"default:10485760,help:most bytes fetched from an image_url"`
	FetchTimeout         time.Duration `conf:"default:5s,help:time limit of an image_url fetch including redirects"`
	FetchAllowHosts      []string      `conf:"help:when set the only host names an image_url may name (whole names; comma-separated)"`
	CanaryEmbedInstances string        `conf:"env:CANARY_EMBED_URLS,help:embed base URLs of the canary model's own deployment (comma-separated; empty: EMBED_URLS serve it)"`
	CanaryModel          string        `conf:"help:model a canary start rolls out when the request names none"`
	CanaryShare          float64       `conf:"default:0.05,help:share of queries a live canary answers (0..1; sticky per Lookalike-Client-Id or client IP)"`
	CanaryShadowRate     float64       `conf:"default:0.05,help:share of the split's stable queries also run on a live canary to compare the spaces (0..1)"`
	CanaryStateTTL       time.Duration `conf:"default:2s,help:cache time of the rollout state (search aliases) for queries"`
}

func main() {
	log := logging.New(os.Stdout, "gateway", slog.LevelInfo)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := subcommand.Run(ctx, os.Stderr, "serve",
		subcommand.Command{Name: "serve", Summary: "serve the public and admin API", Run: func(ctx context.Context, _ []string) int {
			if err := run(ctx); err != nil {
				log.Error("gateway stopped", "err", err)
				return 1
			}
			return 0
		}},
		// A client of a running gateway's rollout admin API (gateway/CANARY.md).
		subcommand.Command{Name: "canary", Summary: "report|start|serve|promote|rollback a model rollout", Run: func(ctx context.Context, args []string) int {
			return runCanary(ctx, args, os.Stdout, os.Stderr, os.Getenv)
		}})
	stop()
	os.Exit(code)
}

func run(ctx context.Context) error {
	// Config and telemetry.
	var cfg config
	boot, err := server.Boot(ctx, server.Service{Name: "gateway", Prefix: "GATEWAY", Commit: commit,
		Addr: "127.0.0.1:8080", MetricsAddr: "127.0.0.1:9080", MaxBodyBytes: 16 << 20, SharedEnv: sharedEnv}, &cfg, &cfg.Settings)
	if err != nil || boot.Help {
		return err
	}
	log, tel, info := boot.Log, boot.Tel, boot.Info

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
	srv := server.New(cfg.Server(), log, tel, info)
	svc.Register(srv.Echo)

	// Run: ready once embed's model list has been read.
	return srv.Run(ctx, svc.Warmup, svc.Close)
}
