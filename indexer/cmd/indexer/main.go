// Command indexer bulk-indexes a product catalog into search, through the
// preprocess, embed and search services (their v1 contracts only).
//
//	indexer [run] --catalog=PATH|URL [flags]   run one job (plain process or K8s Job)
//	indexer serve [flags]                      admin API on :8084 (POST/GET/DELETE /v1/index/jobs)
//
// run prints a JSON summary as its last stdout line and exits 0 (completed),
// 1 (failed: error ratio or a service down), 2 (refused: bad flags, a
// checkpoint without --resume, a changed catalog) or 3 (canceled by a
// signal; --resume continues).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ardanlabs/conf/v3"

	"github.com/lookalike-dev/lookalike/shared/logging"
	"github.com/lookalike-dev/lookalike/shared/server"
	"github.com/lookalike-dev/lookalike/shared/subcommand"
)

// commit is set at link time: -ldflags "-X main.commit=$(git rev-parse HEAD)".
var commit string

// Exit codes of run.
const (
	exitOK       = 0
	exitFailed   = 1
	exitRefused  = 2
	exitCanceled = 3
)

type config struct {
	Args conf.Args

	// Job (run mode).
	Catalog     string `conf:"help:catalog file (.jsonl or .csv) or http(s) URL (run)"`
	Format      string `conf:"help:jsonl or csv (default: from the catalog name)"`
	ImageRoot   string `conf:"help:folder relative image paths resolve in (default: the catalog file's folder)"`
	Model       string `conf:"default:mobilenetv2-int8-v1,help:target model id (vector space)"`
	ExtraModels string `conf:"help:comma-separated extra model ids written in the same pass (dual write, canary backfill)"`
	CatalogName string `conf:"default:products,help:catalog name in search (collection <name>__<model>)"`
	MakeAlias   bool   `conf:"default:true,help:point the catalog alias at the target collection when the alias does not exist yet"`
	StateDir    string `conf:"default:./indexer-state,help:job folder (checkpoint.json, report.jsonl, summary.json) in run mode; root of job folders in serve mode"`
	Resume      bool   `conf:"default:false,help:continue from the checkpoint in --state-dir (starts fresh when there is none)"`
	Progress    bool   `conf:"default:false,help:live progress bar on stderr"`

	// Services.
	PreprocessURL string        `conf:"default:http://127.0.0.1:8081"`
	EmbedURL      string        `conf:"default:http://127.0.0.1:8082"`
	SearchURL     string        `conf:"default:http://127.0.0.1:8083"`
	CallTimeout   time.Duration `conf:"default:60s,help:timeout of one service call"`

	// Pipeline.
	FetchWorkers      int           `conf:"default:8"`
	PreprocessWorkers int           `conf:"default:2"`
	PreprocessBatch   int           `conf:"default:8"`
	EmbedBatch        int           `conf:"default:32"`
	EmbedConcurrency  int           `conf:"default:2"`
	UpsertBatch       int           `conf:"default:64"`
	UpsertConcurrency int           `conf:"default:2"`
	Linger            time.Duration `conf:"default:50ms,help:how long a partial batch waits for more items"`
	CheckpointEvery   time.Duration `conf:"default:1s"`
	Retries           int           `conf:"default:8,help:retries of a service call answering 5xx/429 or unreachable"`

	// Fetching.
	HostRate          float64       `conf:"default:20,help:image fetches per second per origin host"`
	HostBurst         int           `conf:"default:4"`
	MaxImageBytes     int64         `conf:"default:20971520"`
	FetchTimeout      time.Duration `conf:"default:15s"`
	AllowHosts        []string      `conf:"help:only fetch images from these hosts (comma-separated; empty: any public host)"`
	FetchAllowPrivate bool          `conf:"default:false,help:allow private/loopback image hosts (tests only)"`
	MaxCatalogBytes   int64         `conf:"default:1073741824,help:largest catalog download or upload"`

	// Outcome.
	MaxErrorRatio      float64 `conf:"default:0.2,help:fail the job when failed/finished items exceed this"`
	SkipDuplicates     bool    `conf:"default:false,help:leave identical / near-duplicate images out of the index (always reported)"`
	NearDuplicateScore float64 `conf:"default:0,help:report a product whose nearest other SKU scores at least this (0: off)"`
	StopAfter          int     `conf:"default:0,help:cancel after this many items (testing)"`

	// Serve mode (the listeners serve; run mode serves /metrics on
	// MetricsAddr when set) and telemetry.
	server.Settings
	AdminKey              string  `conf:"mask,help:Bearer keys of the admin API, comma-separated for rotation (serve; env LOOKALIKE_ADMIN_KEY or INDEXER_ADMIN_KEY)"`
	AdminKeyFile          string  `conf:"help:file of admin keys one a line, re-read when it changes (serve; env LOOKALIKE_ADMIN_KEY_FILE or INDEXER_ADMIN_KEY_FILE)"`
	AdminAuthFailures     float64 `conf:"default:10,help:wrong admin keys allowed per client IP per minute before 429 (serve; negative: no limit)"`
	AdminAuthFailureBurst int     `conf:"default:10,help:wrong admin keys a client IP may send at once (serve)"`
	CatalogRoot           string  `conf:"help:folder catalog_path of an API job may name (serve; empty: paths refused)"`
}

func main() {
	log := logging.New(os.Stderr, "indexer", slog.LevelInfo)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	mode := func(name string) func(context.Context, []string) int {
		return func(ctx context.Context, _ []string) int {
			code, err := run(ctx, name)
			if err != nil {
				log.Error("indexer stopped", "err", err)
			}
			return code
		}
	}
	code := subcommand.Run(ctx, os.Stderr, "run",
		subcommand.Command{Name: "run", Summary: "run one bulk-indexing job, resumable (--resume)", Run: mode("run")},
		subcommand.Command{Name: "serve", Summary: "serve the admin API that runs jobs", Run: mode("serve")})
	stop()
	os.Exit(code)
}

func run(ctx context.Context, mode string) (int, error) {
	// Config.
	var cfg config
	boot, err := server.Boot(ctx, server.Service{Name: "indexer", Prefix: "INDEXER", Commit: commit, LogTo: os.Stderr,
		Addr: "127.0.0.1:8084", MaxBodyBytes: 1 << 30,
		SharedEnv: map[string]string{"LOOKALIKE_ADMIN_KEY": "INDEXER_ADMIN_KEY", "LOOKALIKE_ADMIN_KEY_FILE": "INDEXER_ADMIN_KEY_FILE",
			"LOOKALIKE_ADMIN_AUTH_FAILURES": "INDEXER_ADMIN_AUTH_FAILURES", "LOOKALIKE_ADMIN_AUTH_FAILURE_BURST": "INDEXER_ADMIN_AUTH_FAILURE_BURST"}},
		&cfg, &cfg.Settings)
	if err != nil {
		return exitRefused, err
	}
	if boot.Help {
		return exitOK, nil
	}
	log, tel := boot.Log, boot.Tel
	if cfg.Args.Num(0) != "" {
		return exitRefused, fmt.Errorf("unexpected arguments %q", []string(cfg.Args))
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()

	if mode == "serve" {
		if err := serve(ctx, log, cfg, tel, boot.Info); err != nil {
			return exitFailed, err
		}
		return exitOK, nil
	}
	return runJob(ctx, log, cfg, tel)
}
