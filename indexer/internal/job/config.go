// Package job runs one bulk-indexing job: it reads a catalog, fetches each
// product's image, and sends it through preprocess, embed and search (the
// same contracts a query uses), pipelined with bounded queues. A job is
// resumable from its state folder (checkpoint plus report), idempotent
// (search keys points by SKU) and reports every item that did not make it.
package job

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lookalike-dev/lookalike/shared/contract/embedv1"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
	"github.com/lookalike-dev/lookalike/shared/safefetch"
)

// ImageFetcher fetches an image by URL; *safefetch.Fetcher is the one used
// in production, so catalog URLs get the same SSRF checks as shopper URLs.
type ImageFetcher interface {
	Fetch(ctx context.Context, rawURL string) (safefetch.Result, error)
}

// Target is a vector space the job writes: a model id (served by Embed)
// and the catalog in Search it goes to. The first target of a job is the
// primary one; extra targets are dual writes (e.g. a canary backfill that
// fills the new model's space in the same pass).
type Target struct {
	Model   string
	Catalog string
	// MakeAlias points the catalog alias at this target's collection when
	// the alias does not exist yet (never moves an existing alias).
	MakeAlias  bool
	Preprocess *preprocessv1.Client
	Embed      *embedv1.Client
	Search     *searchv1.Client
}

// Observer receives item outcomes and stage timings (Prometheus metrics in
// production). Implementations must be safe for concurrent use.
type Observer interface {
	Item(model, status, code string)
	Stage(stage string, items int, d time.Duration)
}

type nopObserver struct{}

func (nopObserver) Item(string, string, string)      {}
func (nopObserver) Stage(string, int, time.Duration) {}

// Config is one job.
type Config struct {
	// Catalog is a local path to a .jsonl/.csv file. Relative image paths
	// resolve inside the catalog file's folder (never outside it).
	Catalog string
	// CatalogRoot, when set, makes Catalog a path inside this folder,
	// opened through os.Root: neither ".." nor a symlink leads out of it.
	CatalogRoot string
	// CatalogURL, when set, is where the catalog came from: relative image
	// references resolve against it and are fetched as URLs. The catalog
	// bytes themselves are at Catalog (the caller downloads them first).
	CatalogURL string
	// ImageRoot, when set, is the folder relative image paths resolve in
	// instead of the catalog's folder; NoLocalImages refuses local paths
	// (an uploaded catalog has no folder of its own).
	ImageRoot     string
	NoLocalImages bool
	// Format overrides the format detected from the file name.
	Format string
	// StateDir holds checkpoint.json, report.jsonl and summary.json.
	StateDir string
	// Resume continues from the checkpoint in StateDir. Without it, a job
	// whose StateDir already has a checkpoint refuses to start.
	Resume bool

	Targets []Target
	Fetcher ImageFetcher

	// Pipeline shape.
	FetchWorkers      int           // parallel image fetches (default 8)
	PreprocessWorkers int           // parallel preprocess batch calls (default 2)
	PreprocessBatch   int           // images per preprocess call (default 8)
	EmbedBatch        int           // rows per embed call (default 32)
	EmbedConcurrency  int           // embed calls in flight (default 2)
	UpsertBatch       int           // points per upsert (default 64)
	UpsertConcurrency int           // upserts in flight (default 2)
	Linger            time.Duration // how long a partial batch waits for more (default 50ms)
	// HostRate and HostBurst limit image fetches per origin host (per second).
	HostRate  float64 // default 20
	HostBurst int     // default 4
	// MaxImageBytes bounds one local image file (URLs: the fetcher's limit).
	MaxImageBytes int64 // default 20 MiB
	// Retries for a whole call to a service that answered 5xx/429 or could
	// not be reached (exponential backoff from 100 ms up to 2 s).
	Retries int // default 8

	// MaxErrorRatio fails the job once failed/finished items exceed it,
	// checked after MinItemsForRatio items and at the end (default 0.2, 20).
	MaxErrorRatio    float64
	MinItemsForRatio int

	// Dedupe: identical images (same perceptual hash from preprocess) are
	// always reported; NearDuplicateScore > 0 also asks search for the
	// nearest stored product and reports a different SKU scoring at least
	// that much. SkipDuplicates leaves duplicates out of the index.
	NearDuplicateScore float32
	SkipDuplicates     bool

	// CheckpointEvery is the checkpoint period (default 1s).
	CheckpointEvery time.Duration
	// StopAfter, when > 0, cancels the job after that many items finished
	// (tests use it to stop at a known point; a kill test uses SIGKILL).
	StopAfter int

	Observer Observer
}

func (c *Config) setDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.FetchWorkers, 8)
	def(&c.PreprocessWorkers, 2)
	def(&c.PreprocessBatch, 8)
	def(&c.EmbedBatch, 32)
	def(&c.EmbedConcurrency, 2)
	def(&c.UpsertBatch, 64)
	def(&c.UpsertConcurrency, 2)
	def(&c.HostBurst, 4)
	def(&c.Retries, 8)
	def(&c.MinItemsForRatio, 20)
	if c.Linger <= 0 {
		c.Linger = 50 * time.Millisecond
	}
	if c.HostRate <= 0 {
		c.HostRate = 20
	}
	if c.MaxImageBytes <= 0 {
		c.MaxImageBytes = 20 << 20
	}
	if c.MaxErrorRatio <= 0 {
		c.MaxErrorRatio = 0.2
	}
	if c.CheckpointEvery <= 0 {
		c.CheckpointEvery = time.Second
	}
	if c.UpsertBatch > searchv1.MaxUpsertBatch {
		c.UpsertBatch = searchv1.MaxUpsertBatch
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
}

func (c *Config) validate() error {
	var errs []error
	if c.Catalog == "" {
		errs = append(errs, errors.New("no catalog"))
	}
	if c.StateDir == "" {
		errs = append(errs, errors.New("no state dir"))
	}
	if len(c.Targets) == 0 {
		errs = append(errs, errors.New("no target"))
	}
	seen := map[string]bool{}
	for i, t := range c.Targets {
		if !searchv1.ValidName(t.Model) || !searchv1.ValidName(t.Catalog) {
			errs = append(errs, fmt.Errorf("target %d: model %q or catalog %q is not a valid name", i, t.Model, t.Catalog))
		}
		if t.Preprocess == nil || t.Embed == nil || t.Search == nil {
			errs = append(errs, fmt.Errorf("target %d: needs preprocess, embed and search clients", i))
		}
		k := t.Catalog + "__" + t.Model
		if seen[k] {
			errs = append(errs, fmt.Errorf("target %d: %s named twice", i, k))
		}
		seen[k] = true
	}
	if c.SkipDuplicates && len(c.Targets) > 1 {
		errs = append(errs, errors.New("skip duplicates works with one target only"))
	}
	if c.MaxErrorRatio > 1 {
		errs = append(errs, fmt.Errorf("max error ratio %g is over 1", c.MaxErrorRatio))
	}
	if c.Format != "" && c.Format != "jsonl" && c.Format != "csv" {
		errs = append(errs, fmt.Errorf("format %q is not jsonl or csv", c.Format))
	}
	return errors.Join(errs...)
}
