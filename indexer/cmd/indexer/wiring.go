package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/lookalike-dev/lookalike/indexer/internal/admin"
	"github.com/lookalike-dev/lookalike/indexer/internal/job"
	"github.com/lookalike-dev/lookalike/indexer/internal/metrics"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
	"github.com/lookalike-dev/lookalike/shared/safefetch"
	"github.com/lookalike-dev/lookalike/shared/telemetry"
)

// deps are the clients every job shares.
type deps struct {
	pre      *preprocessv1.Client
	emb      *embedv1.Client
	sea      *searchv1.Client
	fetcher  *safefetch.Fetcher
	observer job.Observer
	download admin.Downloader
}

func newDeps(cfg config, tel *telemetry.Telemetry) (deps, error) {
	hc := tel.HTTPClient(cfg.CallTimeout)
	obs, err := metrics.New(tel.Meter("lookalike/indexer"))
	if err != nil {
		return deps{}, err
	}
	f := safefetch.New(safefetch.Options{MaxBytes: cfg.MaxImageBytes, Timeout: cfg.FetchTimeout,
		AllowHosts: cfg.AllowHosts, AllowPrivate: cfg.FetchAllowPrivate, UserAgent: "lookalike-indexer/1"})
	d := deps{
		pre:     &preprocessv1.Client{BaseURL: cfg.PreprocessURL, HTTP: hc},
		emb:     &embedv1.Client{BaseURL: cfg.EmbedURL, HTTP: hc},
		sea:     &searchv1.Client{BaseURL: cfg.SearchURL, HTTP: hc},
		fetcher: f, observer: obs,
	}
	// Catalogs are not images: a second fetcher accepts any body, with the
	// same address pinning, redirect re-checks and a catalog-sized limit.
	cf := safefetch.New(safefetch.Options{MaxBytes: cfg.MaxCatalogBytes, Timeout: 10 * time.Minute, AllowHosts: cfg.AllowHosts,
		AllowPrivate: cfg.FetchAllowPrivate, UserAgent: "lookalike-indexer/1", AnyContent: true})
	d.download = func(ctx context.Context, rawURL string, w io.Writer) error {
		return downloadCatalog(ctx, cf, rawURL, w)
	}
	return d, nil
}

// downloadCatalog streams a catalog URL into w through the SSRF-safe
// fetcher, which enforces the size limit as the bytes arrive.
func downloadCatalog(ctx context.Context, f *safefetch.Fetcher, rawURL string, w io.Writer) error {
	if _, err := f.FetchTo(ctx, rawURL, w); err != nil {
		return fmt.Errorf("fetching catalog: %w", err)
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// jobConfig builds a job from the flags (defaults) and a spec (overrides).
func (d deps) jobConfig(cfg config, s admin.Spec, stateDir, catalogPath string, resume bool) job.Config {
	model := cfg.Model
	if s.Model != "" {
		model = s.Model
	}
	name := cfg.CatalogName
	if s.CatalogName != "" {
		name = s.CatalogName
	}
	target := func(m string, alias bool) job.Target {
		return job.Target{Model: m, Catalog: name, MakeAlias: alias, Preprocess: d.pre, Embed: d.emb, Search: d.sea}
	}
	targets := []job.Target{target(model, cfg.MakeAlias)}
	extras := s.ExtraModels
	if extras == nil {
		extras = splitList(cfg.ExtraModels)
	}
	for _, m := range extras {
		targets = append(targets, target(m, false))
	}
	jc := job.Config{
		Catalog: catalogPath, CatalogURL: s.CatalogURL, Format: s.Format, StateDir: stateDir, Resume: resume,
		Targets: targets, Fetcher: d.fetcher, Observer: d.observer,
		FetchWorkers: cfg.FetchWorkers, PreprocessWorkers: cfg.PreprocessWorkers, PreprocessBatch: cfg.PreprocessBatch,
		EmbedBatch: cfg.EmbedBatch, EmbedConcurrency: cfg.EmbedConcurrency, UpsertBatch: cfg.UpsertBatch,
		UpsertConcurrency: cfg.UpsertConcurrency, Linger: cfg.Linger, HostRate: cfg.HostRate, HostBurst: cfg.HostBurst,
		MaxImageBytes: cfg.MaxImageBytes, Retries: cfg.Retries, MaxErrorRatio: cfg.MaxErrorRatio,
		NearDuplicateScore: float32(cfg.NearDuplicateScore), SkipDuplicates: cfg.SkipDuplicates,
		CheckpointEvery: cfg.CheckpointEvery, StopAfter: cfg.StopAfter,
	}
	jc.ImageRoot = cfg.ImageRoot
	if s.MaxErrorRatio > 0 {
		jc.MaxErrorRatio = s.MaxErrorRatio
	}
	if s.NearDuplicateScore > 0 {
		jc.NearDuplicateScore = s.NearDuplicateScore
	}
	if s.SkipDuplicates {
		jc.SkipDuplicates = true
	}
	return jc
}
