package job

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// File names inside the state folder.
const (
	CheckpointFile = "checkpoint.json"
	ReportFile     = "report.jsonl"
	SummaryFile    = "summary.json"
)

// Item statuses in the report.
const (
	StatusDone       = "done"       // indexed in every target
	StatusFailed     = "failed"     // not indexed; Code and Reason say why
	StatusSkipped    = "skipped"    // a duplicate image, left out (SkipDuplicates)
	StatusSuperseded = "superseded" // a later line has the same SKU and wins
)

// Job states.
const (
	StatePending   = "pending"
	StateRunning   = "running"
	StateCompleted = "completed"
	StateFailed    = "failed"
	StateCanceled  = "canceled"
)

// Entry is one report line: the outcome of one catalog line.
type Entry struct {
	Line   int    `json:"line"`
	SKU    string `json:"sku,omitempty"`
	Status string `json:"status"`
	// Stage is where a failure happened: parse, fetch, preprocess, embed, upsert.
	Stage  string `json:"stage,omitempty"`
	Code   string `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`
	PHash  string `json:"phash,omitempty"`
	// DuplicateOf names another SKU with the same (phash) or a near (score)
	// image.
	DuplicateOf    string  `json:"duplicate_of,omitempty"`
	DuplicateKind  string  `json:"duplicate_kind,omitempty"` // "phash" or "near"
	DuplicateScore float32 `json:"duplicate_score,omitempty"`
}

// Counts are a job's item counts. Items is the number of catalog items:
// distinct SKUs plus lines too broken to name one.
type Counts struct {
	Lines      int `json:"lines"`
	Items      int `json:"items"`
	Done       int `json:"done"`
	Failed     int `json:"failed"`
	Skipped    int `json:"skipped"`
	Superseded int `json:"superseded"`
	Duplicates int `json:"duplicates"`
}

// Finished is the number of items with a final outcome.
func (c Counts) Finished() int { return c.Done + c.Failed + c.Skipped }

func (c *Counts) add(e Entry) {
	switch e.Status {
	case StatusDone:
		c.Done++
	case StatusFailed:
		c.Failed++
	case StatusSkipped:
		c.Skipped++
	case StatusSuperseded:
		c.Superseded++
	}
	if e.DuplicateOf != "" {
		c.Duplicates++
	}
}

// Checkpoint is the durable progress of a job. Every catalog line below
// NextLine was handed to the pipeline; those not in InFlight have their
// outcome in the first ReportBytes bytes of the report. A restart truncates
// the report to ReportBytes and replays InFlight, then reads on at NextLine.
type Checkpoint struct {
	Version       int       `json:"version"`
	State         string    `json:"state"`
	CatalogSHA256 string    `json:"catalog_sha256"`
	Models        []string  `json:"models"`
	NextLine      int       `json:"next_line"`
	InFlight      []int     `json:"in_flight"`
	ReportBytes   int64     `json:"report_bytes"`
	Counts        Counts    `json:"counts"`
	Error         string    `json:"error,omitempty"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// ReadCheckpoint reads dir's checkpoint; fs.ErrNotExist when there is none.
func ReadCheckpoint(dir string) (Checkpoint, error) {
	var cp Checkpoint
	b, err := os.ReadFile(filepath.Join(dir, CheckpointFile))
	if err != nil {
		return cp, err
	}
	if err := json.Unmarshal(b, &cp); err != nil {
		return cp, fmt.Errorf("decoding checkpoint: %w", err)
	}
	if cp.Version != 1 {
		return cp, fmt.Errorf("checkpoint version %d is not 1", cp.Version)
	}
	return cp, nil
}

// WriteFileAtomic writes b to path so that a crash leaves the old or the new
// content, never a mix: temp file, fsync, rename, fsync the folder.
func WriteFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("creating temp file: %w", err)
	}
	tmp := f.Name()
	_, werr := f.Write(b)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("renaming into %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening %s to sync: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// ReadReport decodes report entries from r.
func ReadReport(r io.Reader, fn func(Entry) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("decoding report line: %w", err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return sc.Err()
}

// tracker owns the report file, the in-flight set and the counts; the
// checkpoint is a consistent snapshot of the three.
type tracker struct {
	mu       sync.Mutex
	dir      string
	f        *os.File
	w        *bufio.Writer
	size     int64 // bytes written to the report (flushed or not)
	nextLine int
	inFlight map[int]bool
	counts   Counts
	// phash -> SKU of finished items, for identical-image dedupe.
	phashes map[string]string
	// dups maps a SKU flagged as a duplicate (this run) to the SKU it
	// duplicates, so two products are never flagged as each other's.
	dups    map[string]string
	onEntry func(Entry)

	cpMu sync.Mutex
	base Checkpoint
}

// openTracker opens the report, truncated to the checkpoint's length when
// resuming, and rebuilds the counts and hashes from it.
func openTracker(dir string, cp *Checkpoint) (*tracker, error) {
	t := &tracker{dir: dir, inFlight: map[int]bool{}, phashes: map[string]string{}, dups: map[string]string{}}
	path := filepath.Join(dir, ReportFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening report: %w", err)
	}
	var size int64
	if cp != nil {
		size = cp.ReportBytes
		t.nextLine = cp.NextLine
		for _, l := range cp.InFlight {
			t.inFlight[l] = true
		}
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, fmt.Errorf("truncating report to %d bytes: %w", size, err)
	}
	err = ReadReport(io.NewSectionReader(f, 0, size), func(e Entry) error {
		t.counts.add(e)
		if e.Status == StatusDone && e.PHash != "" {
			if _, ok := t.phashes[e.PHash]; !ok {
				t.phashes[e.PHash] = e.SKU
			}
		}
		return nil
	})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("reading report: %w", err)
	}
	if _, err := f.Seek(size, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("seeking report: %w", err)
	}
	t.f, t.w, t.size = f, bufio.NewWriterSize(f, 64<<10), size
	return t, nil
}

// dispatch marks line as handed to the pipeline.
func (t *tracker) dispatch(line int) {
	t.mu.Lock()
	t.inFlight[line] = true
	t.nextLine = max(t.nextLine, line+1)
	t.mu.Unlock()
}

// finish records an item's outcome (once) and advances past its line.
func (t *tracker) finish(e Entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encoding report entry: %w", err)
	}
	b = append(b, '\n')
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, err := t.w.Write(b); err != nil {
		return fmt.Errorf("writing report: %w", err)
	}
	t.size += int64(len(b))
	delete(t.inFlight, e.Line)
	t.nextLine = max(t.nextLine, e.Line+1)
	t.counts.add(e)
	if t.onEntry != nil {
		t.onEntry(e)
	}
	return nil
}

// registerPHash returns the SKU already holding phash, or records sku.
func (t *tracker) registerPHash(phash, sku string) string {
	if phash == "" {
		return ""
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if other, ok := t.phashes[phash]; ok && other != sku {
		return other
	}
	t.phashes[phash] = sku
	return ""
}

// markDuplicate records that sku duplicates of, unless of was already
// marked as a duplicate of sku; it reports whether it recorded it.
func (t *tracker) markDuplicate(sku, of string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dups[of] == sku {
		return false
	}
	t.dups[sku] = of
	return true
}

func (t *tracker) snapshotCounts() Counts {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.counts
}

// checkpoint flushes and syncs the report, then writes the checkpoint.
func (t *tracker) checkpoint(state, errMsg string) (Checkpoint, error) {
	t.cpMu.Lock()
	defer t.cpMu.Unlock()
	t.mu.Lock()
	if err := t.w.Flush(); err != nil {
		t.mu.Unlock()
		return Checkpoint{}, fmt.Errorf("flushing report: %w", err)
	}
	if err := t.f.Sync(); err != nil {
		t.mu.Unlock()
		return Checkpoint{}, fmt.Errorf("syncing report: %w", err)
	}
	cp := t.base
	cp.Version = 1
	cp.State = state
	cp.Error = errMsg
	cp.NextLine = t.nextLine
	cp.ReportBytes = t.size
	cp.Counts = t.counts
	cp.InFlight = make([]int, 0, len(t.inFlight))
	for l := range t.inFlight {
		cp.InFlight = append(cp.InFlight, l)
	}
	t.mu.Unlock()
	slices.Sort(cp.InFlight)
	cp.UpdatedAt = time.Now().UTC()
	b, err := json.MarshalIndent(cp, "", "  ")
	if err != nil {
		return cp, fmt.Errorf("encoding checkpoint: %w", err)
	}
	return cp, WriteFileAtomic(filepath.Join(t.dir, CheckpointFile), b)
}

func (t *tracker) close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return errors.Join(t.w.Flush(), t.f.Close())
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
