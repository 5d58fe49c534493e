// Command embed is the embedding service (contract shared/contract/embedv1):
// ONNX models run by ONNX Runtime behind per-model dynamic batchers.
// SIGHUP reloads the model specs without dropping in-flight work.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/lookalike-dev/lookalike/shared/logging"
	"github.com/lookalike-dev/lookalike/shared/server"

	"github.com/lookalike-dev/lookalike/embed/internal/httpapi"
	"github.com/lookalike-dev/lookalike/embed/internal/modelspec"
	"github.com/lookalike-dev/lookalike/embed/internal/ortsession"
	"github.com/lookalike-dev/lookalike/embed/internal/registry"
)

// commit is set at link time: -ldflags "-X main.commit=$(git rev-parse HEAD)".
var commit string

type config struct {
	server.Settings

	ModelsDir    string   `conf:"default:embed/models,help:folder of model spec files (YAML or JSON)"`
	Models       []string `conf:"help:model ids to load, comma separated (empty: every spec in the folder)"`
	DefaultModel string   `conf:"default:mobilenetv2-int8-v1,help:model answering requests that name none"`
	ModelDir     string   `conf:"default:../shared/models,help:where relative model paths in specs point (MODEL_DIR also works)"`

	ORTLib           string `conf:"default:.cache/onnxruntime/libonnxruntime.so.1,help:ONNX Runtime shared library (ONNXRUNTIME_LIB also works)"`
	Provider         string `conf:"default:auto,help:execution provider: auto (tensorrt then cuda then cpu) tensorrt cuda cpu"`
	DeviceID         int    `conf:"default:0,help:GPU for cuda and tensorrt"`
	IntraOpThreads   int    `conf:"default:0,help:ONNX Runtime threads within one inference (0: auto: 1, with one inference per core)"`
	InterOpThreads   int    `conf:"default:0,help:ONNX Runtime threads across operators (0: runtime default)"`
	TensorRTCacheDir string `conf:"help:TensorRT engine cache folder (off when empty)"`
	Spinning         bool   `conf:"default:false,help:let idle ONNX Runtime threads spin (faster alone, worse when request handling shares the cores)"`

	MaxBatch         int           `conf:"default:32,help:most images per inference"`
	MaxDelay         time.Duration `conf:"default:2ms,help:how long a batch waits to fill"`
	QueueImages      int           `conf:"default:512,help:images waiting per model before 429"`
	Workers          int           `conf:"default:0,help:concurrent inferences per model (0: auto: GOMAXPROCS/intra-op threads on the CPU provider and 1 on a GPU)"`
	MaxRequestImages int           `conf:"default:64,help:most images in one request"`
	RequestTimeout   time.Duration `conf:"default:30s,help:deadline of a request that sets no Lookalike-Timeout-Ms"`
	WarmupFullBatch  bool          `conf:"default:true,help:also warm each model up with a full batch"`
}

func main() {
	log := logging.New(os.Stdout, "embed", slog.LevelInfo)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		log.Error("embed stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	// Config and telemetry.
	var cfg config
	boot, err := server.Boot(ctx, server.Service{Name: "embed", Prefix: "EMBED", Commit: commit,
		Addr: "127.0.0.1:8082", MetricsAddr: "127.0.0.1:9082", MaxBodyBytes: 64 << 20,
		SharedEnv: map[string]string{"MODEL_DIR": "EMBED_MODEL_DIR", "ONNXRUNTIME_LIB": "EMBED_ORT_LIB"}}, &cfg, &cfg.Settings)
	if err != nil || boot.Help {
		return err
	}
	log, tel := boot.Log, boot.Tel
	singleModelDefault(&cfg)
	if err := ortsession.ValidateProvider(cfg.Provider); err != nil {
		return fmt.Errorf("EMBED_PROVIDER: %w", err)
	}

	// Dependencies: ONNX Runtime, and the registry that loads and warms up
	// the models during the server's warm-up.
	rt, err := ortsession.NewRuntime(cfg.ORTLib)
	if err != nil {
		return err
	}
	log.Info("onnx runtime loaded", "library", cfg.ORTLib, "version", rt.Version())
	intra, cpuWorkers := ortsession.AutoThreads(cfg.IntraOpThreads, runtime.GOMAXPROCS(0))
	base := ortsession.SessionOptions{
		Provider: cfg.Provider, DeviceID: cfg.DeviceID, IntraOpThreads: intra,
		InterOpThreads: cfg.InterOpThreads, TensorRTCacheDir: cfg.TensorRTCacheDir, Spinning: cfg.Spinning, Log: log,
	}
	reg := registry.New(registry.Config{
		SpecDir: cfg.ModelsDir, Models: cfg.Models, ModelDir: cfg.ModelDir, DefaultModel: cfg.DefaultModel,
		Batching:        registry.Batching{MaxBatch: cfg.MaxBatch, MaxDelay: cfg.MaxDelay, QueueImages: cfg.QueueImages, Workers: cfg.Workers, CPUWorkers: cpuWorkers},
		WarmupFullBatch: cfg.WarmupFullBatch,
		NewEncoder: func(l modelspec.Loaded) (registry.Encoder, error) {
			return rt.NewSession(l.ONNX, ortsession.OptionsFor(l, base))
		},
		Meter: tel.Meter("lookalike/embed"),
		Log:   log,
	})
	go reloadOnHangup(ctx, reg, log)

	// Server.
	srv := server.New(cfg.Server(), log, tel, boot.Info)
	httpapi.New(reg, httpapi.Config{MaxRequestImages: cfg.MaxRequestImages, RequestTimeout: cfg.RequestTimeout}).Register(srv.Echo)

	// Run: ready once every model is loaded and warmed up; on shutdown the
	// models finish their queues, then the runtime goes.
	return srv.Run(ctx, reg.LoadDir, reg.Close, func(context.Context) error { return rt.Close() })
}

// reloadOnHangup reloads the model specs on SIGHUP: new and changed models
// load and warm up before they serve; removed ones finish their work first.
func reloadOnHangup(ctx context.Context, reg *registry.Registry, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := reg.LoadDir(ctx); err != nil {
				log.ErrorContext(ctx, "model reload failed; the loaded models stay", "err", err)
				continue
			}
			log.InfoContext(ctx, "models reloaded", "models", len(reg.List()))
		}
	}
}

// builtinDefaultModel is the default of --default-model.
const builtinDefaultModel = "mobilenetv2-int8-v1"

// singleModelDefault makes the only model of EMBED_MODELS the default
// model when no default was configured: a deployment that serves just one
// model (the embed-canary deployment of a model rollout) need not repeat it.
func singleModelDefault(cfg *config) {
	if os.Getenv("EMBED_DEFAULT_MODEL") != "" || cfg.DefaultModel != builtinDefaultModel || len(cfg.Models) != 1 {
		return
	}
	cfg.DefaultModel = cfg.Models[0]
}
