package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/lookalike-dev/lookalike/indexer/internal/admin"
	"github.com/lookalike-dev/lookalike/indexer/internal/job"
	"github.com/lookalike-dev/lookalike/shared/catalog"
	"github.com/lookalike-dev/lookalike/shared/telemetry"
)

// runJob runs one job in the foreground and prints its summary.
func runJob(ctx context.Context, log *slog.Logger, cfg config, tel *telemetry.Telemetry) (int, error) {
	if cfg.Catalog == "" {
		return exitRefused, errors.New("--catalog is required")
	}
	d, err := newDeps(cfg, tel)
	if err != nil {
		return exitRefused, err
	}
	if cfg.MetricsAddr != "" {
		ln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return exitRefused, fmt.Errorf("listening for metrics: %w", err)
		}
		msrv := &http.Server{Handler: tel.MetricsHandler(), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = msrv.Serve(ln) }()
		defer msrv.Close()
	}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return exitRefused, fmt.Errorf("creating state dir: %w", err)
	}

	// A URL catalog is downloaded once into the state dir, so a resume
	// reads exactly the same bytes.
	spec := admin.Spec{Format: cfg.Format}
	path := cfg.Catalog
	if strings.HasPrefix(cfg.Catalog, "http://") || strings.HasPrefix(cfg.Catalog, "https://") {
		spec.CatalogURL = cfg.Catalog
		ext := "." + string(catalog.DetectFormat(cfg.Catalog))
		if cfg.Format != "" {
			ext = "." + cfg.Format
		}
		path = filepath.Join(cfg.StateDir, "catalog"+ext)
		if _, err := os.Stat(path); err != nil {
			if err := downloadTo(ctx, d, cfg.Catalog, path); err != nil {
				return exitRefused, err
			}
		}
	}
	j, err := job.New(d.jobConfig(cfg, spec, cfg.StateDir, path, cfg.Resume))
	if err != nil {
		return exitRefused, err
	}
	log.Info("index job starting", "catalog", cfg.Catalog, "model", cfg.Model, "state_dir", cfg.StateDir, "resume", cfg.Resume)

	stopBar := make(chan struct{})
	barDone := make(chan struct{})
	if cfg.Progress {
		go progress(j, stopBar, barDone)
	} else {
		close(barDone)
	}
	sum, err := j.Run(ctx)
	close(stopBar)
	<-barDone

	if sum.State != "" {
		b, _ := json.Marshal(sum)
		fmt.Println(string(b))
	}
	switch {
	case err == nil:
		return exitOK, nil
	case errors.Is(err, job.ErrRefused):
		return exitRefused, err
	case sum.State == job.StateCanceled:
		return exitCanceled, err
	}
	return exitFailed, err
}

func downloadTo(ctx context.Context, d deps, rawURL, path string) error {
	tmp := path + ".part"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("creating catalog file: %w", err)
	}
	err = d.download(ctx, rawURL, f)
	if err = errors.Join(err, f.Sync(), f.Close()); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// progress draws a live bar on stderr from the job's status. The bar is
// made once the catalog's size is known (a bar of unknown length runs a
// spinner goroutine of its own).
func progress(j *job.Job, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var bar *progressbar.ProgressBar
	update := func() {
		s := j.Status()
		if bar == nil {
			if s.Counts.Items == 0 {
				return
			}
			bar = progressbar.NewOptions64(int64(s.Counts.Items),
				progressbar.OptionSetWriter(os.Stderr),
				progressbar.OptionSetDescription("indexing"),
				progressbar.OptionShowCount(),
				progressbar.OptionShowIts(),
				progressbar.OptionSetItsString("items"),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionFullWidth(),
			)
		}
		bar.Describe(fmt.Sprintf("indexing (failed %d, skipped %d)", s.Counts.Failed, s.Counts.Skipped))
		_ = bar.Set64(int64(s.Counts.Finished()))
	}
	for {
		select {
		case <-stop:
			update()
			if bar != nil {
				_ = bar.Exit()
				fmt.Fprintln(os.Stderr)
			}
			return
		case <-tick.C:
			update()
		}
	}
}
