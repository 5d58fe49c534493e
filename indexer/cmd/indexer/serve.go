package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/lookalike-dev/lookalike/indexer/internal/admin"
	"github.com/lookalike-dev/lookalike/indexer/internal/job"
	"github.com/lookalike-dev/lookalike/shared/buildinfo"
	"github.com/lookalike-dev/lookalike/shared/server"
	"github.com/lookalike-dev/lookalike/shared/telemetry"
)

// serve runs the admin API; jobs run in this process, one folder each
// under --state-dir.
func serve(ctx context.Context, log *slog.Logger, cfg config, tel *telemetry.Telemetry, info buildinfo.Info) error {
	if cfg.AdminKey == "" {
		return errors.New("serve needs an admin key (LOOKALIKE_ADMIN_KEY)")
	}
	d, err := newDeps(cfg, tel)
	if err != nil {
		return err
	}
	factory := func(s admin.Spec, dir, catalogPath string, resume bool) (job.Config, error) {
		return d.jobConfig(cfg, s, dir, catalogPath, resume), nil
	}
	m, err := admin.NewManager(ctx, cfg.StateDir, factory, d.download, log)
	if err != nil {
		return err
	}
	srv := server.New(server.Config{Addr: cfg.Addr, MetricsAddr: cfg.MetricsAddr, Pprof: cfg.Pprof, BodyLimit: cfg.MaxCatalogBytes,
		DrainDelay: cfg.DrainDelay, ShutdownTimeout: cfg.ShutdownTimeout}, log, tel, info)
	api := &admin.API{M: m, Key: cfg.AdminKey, CatalogRoot: cfg.CatalogRoot, MaxUpload: cfg.MaxCatalogBytes}
	api.Register(srv.Echo)
	warmup := func(context.Context) error { return m.Resume() }
	closeJobs := func(context.Context) error { m.Wait(); return nil }
	return srv.Run(ctx, warmup, closeJobs)
}
