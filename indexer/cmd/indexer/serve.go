package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/lookalike-dev/lookalike/indexer/internal/admin"
	"github.com/lookalike-dev/lookalike/indexer/internal/job"
	"github.com/lookalike-dev/lookalike/shared/adminkey"
	"github.com/lookalike-dev/lookalike/shared/buildinfo"
	"github.com/lookalike-dev/lookalike/shared/server"
	"github.com/lookalike-dev/lookalike/shared/telemetry"
)

// serve runs the admin API; jobs run in this process, one folder each
// under --state-dir.
func serve(ctx context.Context, log *slog.Logger, cfg config, tel *telemetry.Telemetry, info buildinfo.Info) error {
	keys, err := adminkey.New(adminkey.Config{Keys: cfg.AdminKey, File: cfg.AdminKeyFile,
		FailuresPerMinute: cfg.AdminAuthFailures, FailureBurst: cfg.AdminAuthFailureBurst}, log)
	if err != nil {
		return err
	}
	if keys.Count() == 0 {
		return errors.New("serve needs an admin key (LOOKALIKE_ADMIN_KEY or LOOKALIKE_ADMIN_KEY_FILE)")
	}
	d, err := newDeps(cfg, tel)
	if err != nil {
		return err
	}
	factory := func(s admin.Spec, dir string, src admin.Source, resume bool) (job.Config, error) {
		jc := d.jobConfig(cfg, s, dir, src.Name, resume)
		jc.CatalogRoot = src.Root
		if src.Uploaded { // an uploaded catalog's relative paths resolve under --catalog-root only
			jc.ImageRoot, jc.NoLocalImages = cfg.CatalogRoot, cfg.CatalogRoot == ""
		}
		return jc, nil
	}
	m, err := admin.NewManager(ctx, cfg.StateDir, cfg.CatalogRoot, factory, d.download, log)
	if err != nil {
		return err
	}
	srv := server.New(cfg.Server(), log, tel, info)
	api := &admin.API{M: m, Keys: keys, MaxUpload: cfg.MaxCatalogBytes}
	api.Register(srv.Echo)
	warmup := func(context.Context) error { return m.Resume() }
	closeJobs := func(context.Context) error { m.Wait(); return nil }
	return srv.Run(ctx, warmup, closeJobs)
}
