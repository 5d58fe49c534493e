package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/ardanlabs/conf/v3"

	"github.com/lookalike-dev/lookalike/shared/buildinfo"
	"github.com/lookalike-dev/lookalike/shared/lifecycle"
	"github.com/lookalike-dev/lookalike/shared/logging"
	"github.com/lookalike-dev/lookalike/shared/telemetry"
)

// The lifecycle defaults every service shares (Settings' tags spell them;
// TestSettingsDefaults keeps the two equal).
const (
	DefaultDrainDelay      = lifecycle.DrainDelay
	DefaultShutdownTimeout = lifecycle.ShutdownTimeout
)

// Settings are the settings every service shares. A service embeds them in
// its config struct, so they read from PREFIX_ADDR, --addr and so on. The
// listeners and the body limit differ per service: Boot takes their
// defaults (the tags here cannot) and names them in --help.
type Settings struct {
	Addr            string        `conf:"help:listen address"`
	MetricsAddr     string        `conf:"help:internal listener: /metrics /version /readyz details and pprof (never route it publicly; empty: off)"`
	Pprof           bool          `conf:"default:false,help:serve /debug/pprof/ on the internal listener"`
	LogLevel        string        `conf:"default:info,help:debug info warn error"`
	DrainDelay      time.Duration `conf:"default:5s,help:time NotReady before the listener closes on SIGTERM"`
	ShutdownTimeout time.Duration `conf:"default:20s,help:graceful shutdown bound"`
	MaxBodyBytes    int64         `conf:"help:most bytes of a request body (payload_too_large above)"`
}

// Server is the server configuration the settings give.
func (s Settings) Server() Config {
	return Config{Addr: s.Addr, MetricsAddr: s.MetricsAddr, Pprof: s.Pprof, DrainDelay: s.DrainDelay,
		ShutdownTimeout: s.ShutdownTimeout, BodyLimit: s.MaxBodyBytes}
}

// Service names a service and the defaults of its own listeners.
type Service struct {
	// Name is the service's name in logs, telemetry and /version.
	Name string
	// Prefix of its environment variables ("SEARCH").
	Prefix string
	// Commit is the build's commit, set at link time.
	Commit string
	// Defaults for the settings whose value differs per service.
	Addr, MetricsAddr string
	MaxBodyBytes      int64
	// LogTo receives the logs (nil: stdout; a command whose stdout is its
	// output logs to stderr).
	LogTo io.Writer
	// SharedEnv maps a project-wide variable (MODEL_DIR) to the service's
	// own (EMBED_MODEL_DIR), which it sets when only the first is set.
	SharedEnv map[string]string
}

// Booted is what Boot set up.
type Booted struct {
	Log  *slog.Logger
	Info buildinfo.Info
	Tel  *telemetry.Telemetry
	// Help is true when --help was answered: the caller returns at once.
	Help bool
}

// Boot parses cfg (a pointer to the service's config struct, embedding
// Settings at settings) from flags and environment variables, answers
// --help on stdout, and returns a logger at the configured level, having
// logged the effective config (secrets masked), and the build's telemetry
// from the standard OTEL_* variables.
func Boot(ctx context.Context, svc Service, cfg any, settings *Settings) (Booted, error) {
	return boot(ctx, svc, cfg, settings, os.Stdout)
}

func boot(ctx context.Context, svc Service, cfg any, settings *Settings, stdout io.Writer) (Booted, error) {
	if settings.Addr == "" {
		settings.Addr = svc.Addr
	}
	if settings.MetricsAddr == "" {
		settings.MetricsAddr = svc.MetricsAddr
	}
	if settings.MaxBodyBytes == 0 {
		settings.MaxBodyBytes = svc.MaxBodyBytes
	}
	for shared, own := range svc.SharedEnv {
		if v, ok := os.LookupEnv(shared); ok && os.Getenv(own) == "" {
			if err := os.Setenv(own, v); err != nil {
				return Booted{}, fmt.Errorf("reading %s as %s: %w", shared, own, err)
			}
		}
	}
	help, err := conf.Parse(svc.Prefix, cfg)
	if err != nil {
		if errors.Is(err, conf.ErrHelpWanted) {
			fmt.Fprintln(stdout, help)
			fmt.Fprintf(stdout, "Defaults of this service's own: --addr %s  --metrics-addr %s  --max-body-bytes %d\n",
				svc.Addr, svc.MetricsAddr, svc.MaxBodyBytes)
			if len(svc.SharedEnv) > 0 {
				fmt.Fprintln(stdout, "Suite-wide names also read (when the service's own is unset):")
				for _, k := range slices.Sorted(maps.Keys(svc.SharedEnv)) {
					fmt.Fprintf(stdout, "  %-36s as %s\n", k, svc.SharedEnv[k])
				}
			}
			return Booted{Help: true}, nil
		}
		return Booted{}, fmt.Errorf("parsing config: %w", err)
	}
	logTo := svc.LogTo
	if logTo == nil {
		logTo = stdout
	}
	log := logging.New(logTo, svc.Name, logging.ParseLevel(settings.LogLevel))
	if out, err := conf.String(cfg); err == nil {
		log.Info("config", "effective", out)
	}
	info := buildinfo.Read(svc.Name, svc.Commit)
	log.Info("build", "version", info.Version, "commit", info.Commit, "go", info.GoVersion)
	tel, err := telemetry.Setup(ctx, telemetry.Options{Service: svc.Name, Version: info.Version, Commit: info.Commit})
	if err != nil {
		return Booted{}, fmt.Errorf("setting up telemetry: %w", err)
	}
	return Booted{Log: log, Info: info, Tel: tel}, nil
}
