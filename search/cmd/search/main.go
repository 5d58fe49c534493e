// Command search is the vector search service (contract
// shared/contract/searchv1) over an embedded on-disk index or Qdrant.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/lookalike-dev/lookalike/shared/logging"
	"github.com/lookalike-dev/lookalike/shared/server"

	"github.com/lookalike-dev/lookalike/search/internal/embedded"
	"github.com/lookalike-dev/lookalike/search/internal/hnsw"
	"github.com/lookalike-dev/lookalike/search/internal/httpapi"
	"github.com/lookalike-dev/lookalike/search/internal/qdrantstore"
	"github.com/lookalike-dev/lookalike/search/internal/service"
	"github.com/lookalike-dev/lookalike/search/internal/store"
)

// commit is set at link time: -ldflags "-X main.commit=$(git rev-parse HEAD)".
var commit string

type config struct {
	server.Settings
	Backend         string `conf:"default:embedded,help:embedded or qdrant"`
	DataDir         string `conf:"default:./var/search,help:embedded backend: data directory (WAL + snapshots + HNSW graphs)"`
	ExactThreshold  int    `conf:"default:10000,help:embedded backend: collections smaller than this are scanned exactly"`
	HnswM           int    `conf:"default:16,help:embedded backend: HNSW links per node"`
	HnswEfConstruct int    `conf:"default:200,help:embedded backend: HNSW build beam"`
	HnswEf          int    `conf:"default:256,help:embedded backend: HNSW query beam (at least top_k+offset is used; search/README.md gives its recall)"`
	SnapshotBytes   int64  `conf:"default:67108864,help:embedded backend: WAL size that triggers a snapshot"`
	Qdrant          struct {
		Addr       string        `conf:"default:127.0.0.1:6334,help:Qdrant gRPC host:port (QDRANT_ADDR also works)"`
		APIKey     string        `conf:"mask,help:Qdrant API key (QDRANT_API_KEY also works)"`
		TLS        bool          `conf:"default:false,help:use TLS to Qdrant"`
		CAFile     string        `conf:"env:QDRANT_CA_FILE,help:PEM CA bundle for Qdrant TLS (system roots when empty)"`
		ServerName string        `conf:"env:QDRANT_SERVER_NAME,help:TLS server name override"`
		PoolSize   uint          `conf:"default:3,help:gRPC connections"`
		Timeout    time.Duration `conf:"default:10s,help:per-call timeout"`
		MaxRecvMB  int           `conf:"default:64,help:largest gRPC reply accepted in MiB (the gRPC default is 4)"`
		BatchBytes int           `conf:"default:5000000,help:upsert batch size bound"`
		// Sent when a collection is created; 0 leaves Qdrant's default.
		ShardNumber            uint32 `conf:"default:0,help:shards per new collection (0: Qdrant's default of one per peer)"`
		ReplicationFactor      uint32 `conf:"default:0,help:copies of each shard in a new collection (0: Qdrant's default 1; 2 or more in a cluster)"`
		WriteConsistencyFactor uint32 `conf:"default:0,help:replicas that must confirm a write before it is acknowledged (0: Qdrant's default 1; at most the replication factor)"`
	}
}

func main() {
	log := logging.New(os.Stdout, "search", slog.LevelInfo)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		log.Error("search stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	// Config and telemetry.
	var cfg config
	boot, err := server.Boot(ctx, server.Service{Name: "search", Prefix: "SEARCH", Commit: commit,
		Addr: "127.0.0.1:8083", MetricsAddr: "127.0.0.1:9083", MaxBodyBytes: 64 << 20,
		SharedEnv: map[string]string{"QDRANT_ADDR": "SEARCH_QDRANT_ADDR", "QDRANT_API_KEY": "SEARCH_QDRANT_API_KEY"}}, &cfg, &cfg.Settings)
	if err != nil || boot.Help {
		return err
	}
	log := boot.Log
	if cfg.Backend != "embedded" && cfg.Backend != "qdrant" {
		return fmt.Errorf("SEARCH_BACKEND %q: want embedded or qdrant", cfg.Backend)
	}

	// Dependencies: the store opens during warm-up (the embedded one
	// recovers its snapshot and log, which takes a while when large), so
	// /healthz answers meanwhile and calls get 503 until it is open.
	st := store.NewLazy(cfg.Backend)
	var openMu sync.Mutex
	warmup := func(ctx context.Context) error {
		openMu.Lock()
		defer openMu.Unlock()
		if !st.Opened() {
			opened, err := openStore(cfg, log)
			if err != nil {
				return err
			}
			st.Set(opened)
		}
		return st.Ping(ctx)
	}

	// Server.
	srv := server.New(cfg.Server(), log, boot.Tel, boot.Info)
	httpapi.New(service.New(st)).Register(srv.Echo)

	// Run: ready once the store is open and the backend answers; the store
	// closes (the embedded one snapshots) after the server drained.
	return srv.Run(ctx, warmup, func(context.Context) error {
		openMu.Lock()
		defer openMu.Unlock()
		return st.Close()
	})
}

func openStore(cfg config, log *slog.Logger) (store.Store, error) {
	switch cfg.Backend {
	case "embedded":
		log.Info("embedded backend", "data_dir", cfg.DataDir, "hnswlib", hnsw.Available)
		st, err := embedded.Open(embedded.Options{
			Dir: cfg.DataDir, ExactThreshold: cfg.ExactThreshold, SnapshotBytes: cfg.SnapshotBytes,
			HNSW:   hnsw.Params{M: cfg.HnswM, EfConstruction: cfg.HnswEfConstruct, Ef: cfg.HnswEf},
			Logger: log,
		})
		if err != nil {
			return nil, fmt.Errorf("opening embedded store: %w", err)
		}
		return st, nil
	case "qdrant":
		q := cfg.Qdrant
		var tlsCfg *tls.Config
		if q.TLS && (q.CAFile != "" || q.ServerName != "") {
			tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: q.ServerName}
			if q.CAFile != "" {
				pem, err := os.ReadFile(q.CAFile)
				if err != nil {
					return nil, fmt.Errorf("reading QDRANT_CA_FILE: %w", err)
				}
				pool := x509.NewCertPool()
				if !pool.AppendCertsFromPEM(pem) {
					return nil, fmt.Errorf("QDRANT_CA_FILE %s holds no PEM certificate", q.CAFile)
				}
				tlsCfg.RootCAs = pool
			}
		}
		st, err := qdrantstore.New(qdrantstore.Config{
			Addr: q.Addr, APIKey: q.APIKey, TLS: q.TLS, TLSConfig: tlsCfg, PoolSize: q.PoolSize,
			Timeout: q.Timeout, MaxRecvMsgSize: q.MaxRecvMB << 20, UpsertBatchBytes: q.BatchBytes,
			ShardNumber: q.ShardNumber, ReplicationFactor: q.ReplicationFactor, WriteConsistencyFactor: q.WriteConsistencyFactor,
		})
		if err != nil {
			return nil, fmt.Errorf("connecting to qdrant: %w", err)
		}
		return st, nil
	}
	return nil, fmt.Errorf("SEARCH_BACKEND %q: want embedded or qdrant", cfg.Backend)
}
