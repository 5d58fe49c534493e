// Package admin is the indexer's admin API: start, watch and cancel
// indexing jobs over HTTP (POST/GET/DELETE /v1/index/jobs), behind a
// Bearer admin key. Each job lives in its own folder under the state root
// (spec.json, the catalog copy, checkpoint.json, report.jsonl,
// summary.json); jobs interrupted by a shutdown resume when serve starts.
package admin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/lookalike-dev/lookalike/indexer/internal/job"
	"github.com/lookalike-dev/lookalike/shared/catalog"
)

// Spec is what a POST asks for. Exactly one of CatalogURL, CatalogPath
// or an uploaded file names the catalog.
type Spec struct {
	CatalogURL  string `json:"catalog_url,omitempty"`
	CatalogPath string `json:"catalog_path,omitempty"`
	// Format is jsonl or csv (default: from the name; uploads: jsonl).
	Format string `json:"format,omitempty"`
	// Model is the target vector space (default: the server's).
	Model string `json:"model,omitempty"`
	// ExtraModels are dual-write targets (e.g. a canary's space).
	ExtraModels        []string `json:"extra_models,omitempty"`
	CatalogName        string   `json:"catalog_name,omitempty"`
	SkipDuplicates     bool     `json:"skip_duplicates,omitempty"`
	NearDuplicateScore float32  `json:"near_duplicate_score,omitempty"`
	MaxErrorRatio      float64  `json:"max_error_ratio,omitempty"`
}

// stored is a job as its folder keeps it (spec.json): the caller's spec
// and what the server added. Upload is never taken from a caller.
type stored struct {
	Spec
	Upload string `json:"upload,omitempty"`
}

// Source is where a job's catalog file is: Name inside the folder Root,
// opened through os.Root.
type Source struct {
	Root, Name string
	// Uploaded says the catalog came in the request: it has no folder of
	// its own for relative image paths.
	Uploaded bool
}

// Factory turns a spec into a job config: it fills in the service clients,
// the fetcher and the defaults, and the catalog from src.
type Factory func(s Spec, stateDir string, src Source, resume bool) (job.Config, error)

// Downloader fetches a catalog URL into w as it arrives (bounded while
// streaming; the URL is checked).
type Downloader func(ctx context.Context, rawURL string, w io.Writer) error

// Info is a job as the API shows it.
type Info struct {
	ID   string `json:"id"`
	Spec Spec   `json:"spec"`
	// Uploaded says the catalog came in the request.
	Uploaded bool `json:"uploaded,omitempty"`
	job.Status
	CanceledByUser bool `json:"canceled_by_user,omitempty"`
}

type entry struct {
	id       string
	spec     stored
	dir      string
	mu       sync.Mutex
	j        *job.Job
	state    string // before the job exists: pending, or failed with err
	err      string
	userStop bool
	cancel   context.CancelFunc
	done     chan struct{}
}

// Manager runs jobs in the background.
type Manager struct {
	root        string
	catalogRoot string
	factory     Factory
	download    Downloader
	log         *slog.Logger

	mu   sync.Mutex
	jobs map[string]*entry
	ctx  context.Context
	wg   sync.WaitGroup
}

// NewManager keeps job folders under root; catalogRoot is the folder that
// a spec's catalog_path is inside ("": none). ctx bounds every job: when
// it ends (shutdown), running jobs stop at a checkpoint and resume at the
// next start.
func NewManager(ctx context.Context, root, catalogRoot string, f Factory, d Downloader, log *slog.Logger) (*Manager, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("creating state root: %w", err)
	}
	return &Manager{root: root, catalogRoot: catalogRoot, factory: f, download: d, log: log, jobs: map[string]*entry{}, ctx: ctx}, nil
}

// CatalogRoot is the folder a catalog_path names a file in ("": none).
func (m *Manager) CatalogRoot() string { return m.catalogRoot }

const (
	specFile     = "spec.json"
	userStopFile = "canceled-by-user"
	uploadName   = "upload"
)

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Dir is a job's folder.
func (m *Manager) Dir(id string) string { return filepath.Join(m.root, id) }

// uploadFile is the name an uploaded catalog is stored under.
func uploadFile(format string) string {
	if format == "csv" {
		return uploadName + ".csv"
	}
	return uploadName + ".jsonl"
}

// Start creates a job and runs it in the background. upload, when not nil,
// is the catalog's bytes.
func (m *Manager) Start(spec Spec, upload io.Reader) (Info, error) {
	id := newID()
	dir := m.Dir(id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Info{}, fmt.Errorf("creating job folder: %w", err)
	}
	s := stored{Spec: spec}
	if upload != nil {
		s.Upload = uploadFile(s.Format)
		f, err := os.Create(filepath.Join(dir, s.Upload))
		if err != nil {
			return Info{}, fmt.Errorf("storing upload: %w", err)
		}
		_, err = io.Copy(f, upload)
		if err = errors.Join(err, f.Sync(), f.Close()); err != nil {
			os.RemoveAll(dir)
			return Info{}, err
		}
	}
	b, _ := json.MarshalIndent(s, "", "  ")
	if err := job.WriteFileAtomic(filepath.Join(dir, specFile), b); err != nil {
		return Info{}, err
	}
	e := &entry{id: id, spec: s, dir: dir, state: job.StatePending, done: make(chan struct{})}
	m.mu.Lock()
	m.jobs[id] = e
	m.mu.Unlock()
	m.launch(e, false)
	return e.info(), nil
}

// errBadStoredSpec refuses a spec.json naming files the server does not
// write (edited by hand, or kept from before upload was a server field).
var errBadStoredSpec = errors.New("the job's spec.json names a catalog file this server did not write; the job is not run")

// source returns where a job's catalog file is, downloading a URL catalog
// into the job folder first (once). Files are opened through os.Root, so
// no name in a spec leads out of the job folder or the catalog root.
func (m *Manager) source(ctx context.Context, e *entry) (Source, error) {
	switch {
	case e.spec.Upload != "":
		if e.spec.Upload != uploadFile(e.spec.Format) {
			return Source{}, errBadStoredSpec
		}
		return Source{Root: e.dir, Name: e.spec.Upload, Uploaded: true}, nil
	case e.spec.CatalogPath != "":
		if m.catalogRoot == "" {
			return Source{}, errors.New("catalog_path is off on this server (no catalog root)")
		}
		name := filepath.FromSlash(e.spec.CatalogPath)
		if filepath.IsAbs(name) { // spec.json written by a version that stored the whole path
			rel, err := filepath.Rel(m.catalogRoot, name)
			if err != nil || !filepath.IsLocal(rel) {
				return Source{}, errBadStoredSpec
			}
			name = rel
		}
		if !filepath.IsLocal(name) {
			return Source{}, errBadStoredSpec
		}
		return Source{Root: m.catalogRoot, Name: name}, nil
	case e.spec.CatalogURL == "":
		return Source{}, errBadStoredSpec
	}
	name := "catalog" + map[catalog.Format]string{catalog.CSV: ".csv", catalog.JSONL: ".jsonl"}[catalog.DetectFormat(e.spec.CatalogURL)]
	if e.spec.Format == "csv" || e.spec.Format == "jsonl" {
		name = "catalog." + e.spec.Format
	}
	root, err := os.OpenRoot(e.dir)
	if err != nil {
		return Source{}, fmt.Errorf("opening job folder: %w", err)
	}
	defer root.Close()
	src := Source{Root: e.dir, Name: name}
	if _, err := root.Stat(name); err == nil {
		return src, nil
	}
	tmp := name + ".part"
	f, err := root.Create(tmp)
	if err != nil {
		return Source{}, fmt.Errorf("creating catalog file: %w", err)
	}
	err = m.download(ctx, e.spec.CatalogURL, f)
	if err = errors.Join(err, f.Sync(), f.Close()); err != nil {
		root.Remove(tmp)
		return Source{}, fmt.Errorf("downloading catalog: %w", err)
	}
	if err := root.Rename(tmp, name); err != nil {
		return Source{}, fmt.Errorf("storing catalog: %w", err)
	}
	return src, nil
}

func (m *Manager) launch(e *entry, resume bool) {
	ctx, cancel := context.WithCancel(m.ctx)
	e.mu.Lock()
	e.cancel = cancel
	e.mu.Unlock()
	m.wg.Go(func() {
		defer close(e.done)
		defer cancel()
		fail := func(err error) {
			e.mu.Lock()
			e.state, e.err = job.StateFailed, err.Error()
			e.mu.Unlock()
			m.log.Error("index job failed to start", "job", e.id, "err", err)
		}
		src, err := m.source(ctx, e)
		if err != nil {
			fail(err)
			return
		}
		cfg, err := m.factory(e.spec.Spec, e.dir, src, resume)
		if err != nil {
			fail(err)
			return
		}
		j, err := job.New(cfg)
		if err != nil {
			fail(err)
			return
		}
		e.mu.Lock()
		e.j = j
		e.mu.Unlock()
		m.log.Info("index job started", "job", e.id, "models", cfg.Targets[0].Model, "resume", resume)
		sum, err := j.Run(ctx)
		if err != nil && sum.State == "" {
			fail(err)
			return
		}
		m.log.Info("index job ended", "job", e.id, "state", sum.State, "done", sum.Counts.Done, "failed", sum.Counts.Failed, "skipped", sum.Counts.Skipped, "err", err)
	})
}

// Resume picks up the jobs found under the root that a shutdown (not a
// user) interrupted.
func (m *Manager) Resume() error {
	ents, err := os.ReadDir(m.root)
	if err != nil {
		return fmt.Errorf("listing jobs: %w", err)
	}
	for _, d := range ents {
		if !d.IsDir() {
			continue
		}
		dir := filepath.Join(m.root, d.Name())
		b, err := os.ReadFile(filepath.Join(dir, specFile))
		if err != nil {
			continue
		}
		var s stored
		if err := json.Unmarshal(b, &s); err != nil {
			m.log.Warn("skipping job with unreadable spec", "job", d.Name(), "err", err)
			continue
		}
		e := &entry{id: d.Name(), spec: s, dir: dir, state: job.StatePending, done: make(chan struct{})}
		_, stopErr := os.Stat(filepath.Join(dir, userStopFile))
		e.userStop = stopErr == nil
		cp, cpErr := job.ReadCheckpoint(dir)
		m.mu.Lock()
		m.jobs[e.id] = e
		m.mu.Unlock()
		switch {
		case cpErr == nil && (cp.State == job.StateCompleted || cp.State == job.StateFailed || e.userStop):
			e.state, e.err = cp.State, cp.Error
			close(e.done)
		default:
			m.launch(e, cpErr == nil)
		}
	}
	return nil
}

// Get returns a job.
func (m *Manager) Get(id string) (Info, bool) {
	m.mu.Lock()
	e, ok := m.jobs[id]
	m.mu.Unlock()
	if !ok {
		return Info{}, false
	}
	return e.info(), true
}

// List returns every job, newest first.
func (m *Manager) List() []Info {
	m.mu.Lock()
	es := make([]*entry, 0, len(m.jobs))
	for _, e := range m.jobs {
		es = append(es, e)
	}
	m.mu.Unlock()
	out := make([]Info, len(es))
	for i, e := range es {
		out[i] = e.info()
	}
	slices.SortFunc(out, func(a, b Info) int {
		ta, tb := time.Time{}, time.Time{}
		if a.StartedAt != nil {
			ta = *a.StartedAt
		}
		if b.StartedAt != nil {
			tb = *b.StartedAt
		}
		return tb.Compare(ta)
	})
	return out
}

// Cancel stops a job at its next checkpoint and keeps it as canceled (a
// restart of the server does not resume it). It is idempotent.
func (m *Manager) Cancel(id string) (Info, bool) {
	m.mu.Lock()
	e, ok := m.jobs[id]
	m.mu.Unlock()
	if !ok {
		return Info{}, false
	}
	e.mu.Lock()
	e.userStop = true
	c := e.cancel
	e.mu.Unlock()
	_ = os.WriteFile(filepath.Join(e.dir, userStopFile), nil, 0o644)
	if c != nil {
		c()
	}
	select {
	case <-e.done:
	case <-time.After(10 * time.Second):
	}
	return e.info(), true
}

// Wait blocks until every job goroutine has returned (after ctx ended).
func (m *Manager) Wait() { m.wg.Wait() }

func (e *entry) info() Info {
	e.mu.Lock()
	j, state, errMsg, user := e.j, e.state, e.err, e.userStop
	e.mu.Unlock()
	in := Info{ID: e.id, Spec: e.spec.Spec, Uploaded: e.spec.Upload != "", CanceledByUser: user}
	if j != nil {
		in.Status = j.Status()
		return in
	}
	in.Status = job.Status{State: state, Error: errMsg}
	if cp, err := job.ReadCheckpoint(e.dir); err == nil {
		in.Status.State, in.Status.Counts, in.Status.Models, in.Status.Error = cp.State, cp.Counts, cp.Models, cp.Error
	}
	return in
}
