package job

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lookalike-dev/lookalike/shared/catalog"
)

// ErrRefused is wrapped by errors about the job's setup: bad config, a
// checkpoint that exists without Resume, a catalog that changed since the
// checkpoint. Nothing was indexed.
var ErrRefused = errors.New("job refused")

// ErrTooManyErrors is wrapped when the error ratio is exceeded.
var ErrTooManyErrors = errors.New("error ratio exceeded")

// Summary is a finished run (printed as the CLI's last line).
type Summary struct {
	State          string   `json:"state"`
	Counts         Counts   `json:"counts"`
	Models         []string `json:"models"`
	Catalogs       []string `json:"catalogs"`
	ElapsedSeconds float64  `json:"elapsed_seconds"`
	// RatePerSecond is items finished per second in this run.
	RatePerSecond float64 `json:"rate_per_second"`
	Resumed       bool    `json:"resumed"`
	Report        string  `json:"report"`
	Error         string  `json:"error,omitempty"`
}

// Status is a live view of a job.
type Status struct {
	State          string     `json:"state"`
	Counts         Counts     `json:"counts"`
	Models         []string   `json:"models"`
	StartedAt      *time.Time `json:"started_at,omitempty"`
	FinishedAt     *time.Time `json:"finished_at,omitempty"`
	ElapsedSeconds float64    `json:"elapsed_seconds"`
	RatePerSecond  float64    `json:"rate_per_second"`
	ETASeconds     *float64   `json:"eta_seconds,omitempty"`
	Error          string     `json:"error,omitempty"`
}

// Job is one run of a catalog through the pipeline.
type Job struct {
	cfg Config

	mu        sync.Mutex
	state     string
	errMsg    string
	started   time.Time
	finished  time.Time
	tr        *tracker
	lines     int
	items     int
	finishedN atomic.Int64

	cancel context.CancelCauseFunc
}

// New checks the config and returns a job ready to Run.
func New(cfg Config) (*Job, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return &Job{cfg: cfg, state: StatePending}, nil
}

func (j *Job) models() []string {
	out := make([]string, len(j.cfg.Targets))
	for i, t := range j.cfg.Targets {
		out[i] = t.Model
	}
	return out
}

func (j *Job) catalogs() []string {
	out := make([]string, len(j.cfg.Targets))
	for i, t := range j.cfg.Targets {
		out[i] = t.Catalog
	}
	return out
}

// Status returns the job's live state.
func (j *Job) Status() Status {
	j.mu.Lock()
	defer j.mu.Unlock()
	s := Status{State: j.state, Models: j.models(), Error: j.errMsg}
	if j.tr != nil {
		s.Counts = j.tr.snapshotCounts()
		s.Counts.Lines, s.Counts.Items = j.lines, j.items
	}
	if !j.started.IsZero() {
		st := j.started
		s.StartedAt = &st
		end := time.Now()
		if !j.finished.IsZero() {
			f := j.finished
			s.FinishedAt = &f
			end = f
		}
		s.ElapsedSeconds = end.Sub(st).Seconds()
		if n := j.finishedN.Load(); n > 0 && s.ElapsedSeconds > 0 {
			s.RatePerSecond = float64(n) / s.ElapsedSeconds
			if s.State == StateRunning {
				eta := float64(max(0, s.Counts.Items-s.Counts.Finished())) / s.RatePerSecond
				s.ETASeconds = &eta
			}
		}
	}
	return s
}

// Cancel stops a running job; it stays resumable from its checkpoint.
func (j *Job) Cancel() {
	j.mu.Lock()
	c := j.cancel
	j.mu.Unlock()
	if c != nil {
		c(context.Canceled)
	}
}

// prescan reads the whole catalog once: its digest, its size, and the last
// line of each SKU (the line that wins).
type prescan struct {
	sha      string
	lines    int
	items    int
	lastLine map[string]int
}

func recordSKU(r catalog.Record) string {
	if r.Err != nil {
		return r.Err.SKU
	}
	return r.Product.SKU
}

func (j *Job) format() catalog.Format {
	if j.cfg.Format != "" {
		return catalog.Format(j.cfg.Format)
	}
	return catalog.DetectFormat(j.cfg.Catalog)
}

// openCatalog opens the catalog file, through os.Root when it lives in a
// catalog root.
func (j *Job) openCatalog() (*os.File, error) {
	if j.cfg.CatalogRoot == "" {
		return os.Open(j.cfg.Catalog)
	}
	root, err := os.OpenRoot(j.cfg.CatalogRoot)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return root.Open(j.cfg.Catalog)
}

// catalogDir is the folder of the catalog file.
func (j *Job) catalogDir() string {
	return filepath.Dir(filepath.Join(j.cfg.CatalogRoot, j.cfg.Catalog))
}

func (j *Job) scan() (prescan, error) {
	f, err := j.openCatalog()
	if err != nil {
		return prescan{}, fmt.Errorf("%w: opening catalog: %w", ErrRefused, err)
	}
	defer f.Close()
	h := sha256.New()
	r := catalog.NewReader(io.TeeReader(f, h), j.format())
	ps := prescan{lastLine: map[string]int{}}
	keyless := 0
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return prescan{}, fmt.Errorf("%w: reading catalog: %w", ErrRefused, err)
		}
		ps.lines++
		if sku := recordSKU(rec); sku != "" {
			ps.lastLine[sku] = rec.Line
		} else {
			keyless++
		}
	}
	if _, err := io.Copy(h, f); err != nil {
		return prescan{}, fmt.Errorf("reading catalog: %w", err)
	}
	ps.sha = hex.EncodeToString(h.Sum(nil))
	ps.items = len(ps.lastLine) + keyless
	return ps, nil
}

// Run runs the job to its end (or ctx's), checkpointing as it goes. The
// summary is returned even with an error when the job got as far as running.
func (j *Job) Run(ctx context.Context) (Summary, error) {
	if err := os.MkdirAll(j.cfg.StateDir, 0o755); err != nil {
		return Summary{}, fmt.Errorf("%w: creating state dir: %w", ErrRefused, err)
	}
	var cp *Checkpoint
	if c, err := ReadCheckpoint(j.cfg.StateDir); err == nil {
		if !j.cfg.Resume {
			return Summary{}, fmt.Errorf("%w: %s has a checkpoint (state %s); resume it or use a new state dir", ErrRefused, j.cfg.StateDir, c.State)
		}
		cp = &c
	} else if !isNotExist(err) {
		return Summary{}, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	ps, err := j.scan()
	if err != nil {
		return Summary{}, err
	}
	if cp != nil {
		if cp.CatalogSHA256 != ps.sha {
			return Summary{}, fmt.Errorf("%w: the catalog changed since the checkpoint (sha256 %s, checkpoint has %s)", ErrRefused, ps.sha, cp.CatalogSHA256)
		}
		if fmt.Sprint(cp.Models) != fmt.Sprint(j.models()) {
			return Summary{}, fmt.Errorf("%w: checkpoint is for models %v, job names %v", ErrRefused, cp.Models, j.models())
		}
		if cp.State == StateCompleted {
			return j.storedSummary(cp)
		}
	}
	tr, err := openTracker(j.cfg.StateDir, cp)
	if err != nil {
		return Summary{}, err
	}
	defer tr.close()
	tr.base = Checkpoint{CatalogSHA256: ps.sha, Models: j.models()}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	j.mu.Lock()
	j.tr, j.lines, j.items = tr, ps.lines, ps.items
	j.state, j.started, j.cancel = StateRunning, time.Now(), cancel
	j.mu.Unlock()
	tr.onEntry = j.onEntry(cancel)

	runErr := j.pipeline(ctx, ps, cp)

	// Outcome.
	counts := tr.snapshotCounts()
	counts.Lines, counts.Items = ps.lines, ps.items
	state := StateCompleted
	cause := context.Cause(ctx)
	switch {
	case runErr != nil:
		state = StateFailed
	case errors.Is(cause, ErrTooManyErrors):
		state, runErr = StateFailed, cause
	case ctx.Err() != nil:
		state = StateCanceled
		if !errors.Is(cause, context.Canceled) {
			runErr = cause
		} else {
			runErr = context.Canceled
		}
	case counts.Finished() > 0 && float64(counts.Failed)/float64(counts.Finished()) > j.cfg.MaxErrorRatio:
		state = StateFailed
		runErr = fmt.Errorf("%w: %d of %d items failed (max ratio %g)", ErrTooManyErrors, counts.Failed, counts.Finished(), j.cfg.MaxErrorRatio)
	case counts.Finished() != ps.items:
		state = StateFailed
		runErr = fmt.Errorf("internal: %d items finished of %d", counts.Finished(), ps.items)
	}
	msg := ""
	if runErr != nil {
		msg = runErr.Error()
	}
	final, cpErr := tr.checkpoint(state, msg)
	if cpErr != nil {
		runErr = errors.Join(runErr, cpErr)
		msg = runErr.Error()
	}
	j.mu.Lock()
	j.state, j.errMsg, j.finished = state, msg, time.Now()
	elapsed := j.finished.Sub(j.started).Seconds()
	j.mu.Unlock()
	sum := Summary{
		State: state, Counts: counts, Models: j.models(), Catalogs: j.catalogs(),
		ElapsedSeconds: elapsed, Resumed: cp != nil, Report: filepath.Join(j.cfg.StateDir, ReportFile), Error: msg,
	}
	sum.Counts = final.Counts
	sum.Counts.Lines, sum.Counts.Items = ps.lines, ps.items
	if elapsed > 0 {
		sum.RatePerSecond = float64(j.finishedN.Load()) / elapsed
	}
	if b, err := json.MarshalIndent(sum, "", "  "); err == nil {
		runErr = errors.Join(runErr, WriteFileAtomic(filepath.Join(j.cfg.StateDir, SummaryFile), b))
	}
	return sum, runErr
}

func (j *Job) storedSummary(cp *Checkpoint) (Summary, error) {
	var sum Summary
	b, err := os.ReadFile(filepath.Join(j.cfg.StateDir, SummaryFile))
	if err == nil {
		err = json.Unmarshal(b, &sum)
	}
	if err != nil {
		sum = Summary{State: cp.State, Counts: cp.Counts, Models: cp.Models, Report: filepath.Join(j.cfg.StateDir, ReportFile)}
	}
	sum.Resumed = true
	j.mu.Lock()
	j.state, j.started, j.finished = cp.State, cp.UpdatedAt, cp.UpdatedAt
	j.mu.Unlock()
	return sum, nil
}

// onEntry watches outcomes: metrics, the error ratio, StopAfter.
func (j *Job) onEntry(cancel context.CancelCauseFunc) func(Entry) {
	return func(e Entry) {
		if e.Status == StatusSuperseded {
			return
		}
		j.cfg.Observer.Item(j.cfg.Targets[0].Model, e.Status, e.Code)
		n := j.finishedN.Add(1)
		c := j.tr.counts // called under the tracker lock
		if f := c.Finished(); f >= j.cfg.MinItemsForRatio && float64(c.Failed)/float64(f) > j.cfg.MaxErrorRatio {
			cancel(fmt.Errorf("%w: %d of %d items failed (max ratio %g)", ErrTooManyErrors, c.Failed, f, j.cfg.MaxErrorRatio))
		}
		if j.cfg.StopAfter > 0 && int(n) >= j.cfg.StopAfter {
			cancel(context.Canceled)
		}
	}
}
