// Command preprocess is the preprocessing service: image bytes in, model
// input tensors out (contract shared/contract/preprocessv1).
package main

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/lookalike-dev/lookalike/shared/logging"
	"github.com/lookalike-dev/lookalike/shared/server"

	"github.com/lookalike-dev/lookalike/preprocess/internal/httpapi"
	"github.com/lookalike-dev/lookalike/preprocess/internal/imagedecode"
	"github.com/lookalike-dev/lookalike/preprocess/internal/preprocessor"
	"github.com/lookalike-dev/lookalike/preprocess/internal/turbojpeg"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
)

// commit is set at link time: -ldflags "-X main.commit=$(git rev-parse HEAD)".
var commit string

type config struct {
	server.Settings
	RequestTimeout  time.Duration `conf:"default:10s,help:per-request deadline"`
	MaxBytes        int64         `conf:"default:20971520,help:most bytes of one image (image_too_large above)"`
	MaxPixels       int64         `conf:"default:50000000,help:most pixels an image header may declare (dimensions_too_large above)"`
	MaxBatchImages  int           `conf:"default:64,help:most images in one batch request"`
	Concurrency     int           `conf:"default:0,help:images processed at once across requests (0: GOMAXPROCS)"`
	Background      string        `conf:"default:#ffffff,help:colour alpha is composited on when the spec names none"`
	DefaultSpec     string        `conf:"help:JSON preprocessing spec used when a request sends none (empty: ImageNet 256/224 bilinear)"`
	DecodeRatio     float64       `conf:"default:1,help:fewest decoded pixels per output pixel a JPEG is DCT-reduced to (default mode)"`
	HQDecodeRatio   float64       `conf:"default:2,help:the same for the high-accuracy interpolations lanczos3 and catmullrom"`
	FastIDCT        bool          `conf:"default:false,help:libjpeg-turbo fast IDCT and upsampling in the default mode"`
	KeepFreedMemory int           `conf:"default:268435456,help:freed decoder bytes the C allocator keeps for the next image rather than return to the kernel (0: glibc defaults)"`
	DecodeMemory    int64         `conf:"default:402653184,help:bytes all decodes in progress may be expected to allocate together (a decode waits within its deadline for its share)"`
	ImageMemory     int64         `conf:"default:268435456,help:most bytes one image's decode may be expected to allocate (image_too_complex above)"`
	MaxScans        int           `conf:"default:256,help:most scans of a progressive JPEG (too_many_scans above)"`
	MaxScanVisits   int           `conf:"default:32,help:most times a JPEG's scans may cover each block on average (too_many_scans above)"`
	MemoryLimit     int64         `conf:"default:0,help:the container's memory limit in bytes (0: none); unless GOMEMLIMIT is set, the Go heap's soft limit becomes 90% of it less the decode memory (C allocations the Go runtime cannot see)"`
}

func main() {
	log := logging.New(os.Stdout, "preprocess", slog.LevelInfo)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		log.Error("preprocess stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	// Config and telemetry.
	var cfg config
	boot, err := server.Boot(ctx, server.Service{Name: "preprocess", Prefix: "PREPROCESS", Commit: commit,
		Addr: "127.0.0.1:8081", MetricsAddr: "127.0.0.1:9081", MaxBodyBytes: 256 << 20}, &cfg, &cfg.Settings)
	if err != nil || boot.Help {
		return err
	}
	log, tel, info := boot.Log, boot.Tel, boot.Info
	if lim, ok := goMemoryLimit(cfg.MemoryLimit, cfg.DecodeMemory, os.Getenv("GOMEMLIMIT")); ok {
		debug.SetMemoryLimit(lim)
		log.Info("go memory limit set from the container limit", "container_bytes", cfg.MemoryLimit, "go_limit_bytes", lim)
	}
	spec := preprocessv1.ImageNet()
	if cfg.DefaultSpec != "" {
		if spec, err = preprocessv1.DecodeSpec(cfg.DefaultSpec); err != nil {
			return fmt.Errorf("default spec: %w", err)
		}
	}

	// Dependencies.
	metrics, err := preprocessor.NewMetrics(tel.Meter("lookalike/preprocess"))
	if err != nil {
		return err
	}
	proc, err := preprocessor.New(preprocessor.Options{
		Limits: imagedecode.Limits{MaxBytes: cfg.MaxBytes, MaxPixels: cfg.MaxPixels,
			Scans: imagedecode.ScanLimits{MaxScans: cfg.MaxScans, MaxVisitsPerBlock: cfg.MaxScanVisits}},
		DefaultSpec: spec, Background: cfg.Background, Concurrency: cfg.Concurrency,
		DecodeRatio: cfg.DecodeRatio, HQDecodeRatio: cfg.HQDecodeRatio, FastIDCT: cfg.FastIDCT,
		KeepFreedMemory: cfg.KeepFreedMemory,
		DecodeMemory:    cfg.DecodeMemory, ImageMemory: cfg.ImageMemory,
	}, metrics)
	if err != nil {
		return fmt.Errorf("building preprocessor: %w", err)
	}
	if turbojpeg.Available() && cfg.KeepFreedMemory > 0 && !turbojpeg.OneArena(os.Getenv) {
		log.Warn("glibc malloc has an arena per thread: set "+turbojpeg.ArenaEnv+" (the image and manifests do), or freed decoder memory goes back to the kernel and comes back as page faults",
			"env", turbojpeg.ArenaEnv)
	}

	// Server.
	srv := server.New(cfg.Server(), log, tel, info)
	httpapi.New(proc, httpapi.Config{MaxBytes: cfg.MaxBytes, MaxBatchImages: cfg.MaxBatchImages, Timeout: cfg.RequestTimeout}).Register(srv.Echo)

	// Run: ready once a generated image went through the whole pipeline.
	return srv.Run(ctx, func(ctx context.Context) error { return warmup(ctx, proc) })
}

// goMemoryLimit is the Go runtime's soft memory limit for a container of
// limit bytes: 90% of it, less the decode memory, which libjpeg-turbo
// takes from the C allocator where the Go runtime cannot see it. GOMEMLIMIT,
// when set (env), wins: the runtime has read it.
func goMemoryLimit(limit, decode int64, env string) (int64, bool) {
	if limit <= 0 || env != "" {
		return 0, false
	}
	return max(limit/10*9-decode, limit/4), true
}

// warmup preprocesses a generated JPEG with the default spec and checks the
// tensor's size.
func warmup(ctx context.Context, proc *preprocessor.Processor) error {
	img := image.NewRGBA(image.Rect(0, 0, 640, 480))
	for y := range 480 {
		for x := range 640 {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8(x + y), 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, nil); err != nil {
		return fmt.Errorf("warm-up: encoding: %w", err)
	}
	spec := proc.DefaultSpec()
	r, err := proc.Process(ctx, buf.Bytes(), spec)
	if err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	if want := 3 * spec.Width * spec.Height * preprocessor.DType(spec).Size(); len(r.Data) != want {
		return fmt.Errorf("warm-up: tensor of %d bytes, want %d", len(r.Data), want)
	}
	return nil
}
