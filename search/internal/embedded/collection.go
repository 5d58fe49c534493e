package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/lookalike-dev/lookalike/search/internal/flat"
	"github.com/lookalike-dev/lookalike/search/internal/hnsw"
	"github.com/lookalike-dev/lookalike/search/internal/store"
)

const chunkSlots = 1024

// collection is one physical collection in memory plus its files:
// snap-<gen>.bin, hnsw-<gen>.bin and wal-<gen>.log in its directory, and
// CURRENT naming the committed generation.
type collection struct {
	name, catalog, model string
	dim                  int
	dir                  string
	opts                 *Options
	fs                   FS
	log                  *slog.Logger

	writeMu sync.Mutex // serialises writers: wal append, apply, snapshot
	wal     File
	walSize int64
	gen     uint64
	snapLen int64 // bytes of the last snapshot
	// failed is the storage failure after which the collection refuses
	// writes until the process restarts: the log may end in a record that
	// is not durable, or the committed generation is unknown.
	failed error

	mu       sync.RWMutex // guards the slot data below
	slots    map[string]int
	skus     []string
	payloads []map[string]any
	live     []bool
	chunks   [][]float32
	nLive    int

	ixMu    sync.RWMutex // guards ix and indexed; searches share it
	ix      *hnsw.Index  // nil without hnswlib
	indexed []bool
}

func (c *collection) vector(slot int) []float32 {
	ch := c.chunks[slot/chunkSlots]
	o := (slot % chunkSlots) * c.dim
	return ch[o : o+c.dim]
}

// newSlot appends a slot for sku (caller holds mu or owns c).
func (c *collection) newSlot(sku string) int {
	s := len(c.skus)
	if s%chunkSlots == 0 {
		c.chunks = append(c.chunks, make([]float32, chunkSlots*c.dim))
	}
	c.skus = append(c.skus, sku)
	c.payloads = append(c.payloads, nil)
	c.live = append(c.live, false)
	c.slots[sku] = s
	return s
}

func (c *collection) info() store.Collection {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return store.Collection{Name: c.name, Catalog: c.catalog, Model: c.model, Dim: c.dim, Count: int64(c.nLive)}
}

func (c *collection) path(kind string, gen uint64) string {
	ext := ".bin"
	if kind == "wal" {
		ext = ".log"
	}
	return filepath.Join(c.dir, fmt.Sprintf("%s-%020d%s", kind, gen, ext))
}

// open loads the committed generation (its snapshot, its saved graph or a
// rebuilt one) and replays its log, cutting a torn tail. Any other damage
// fails the open and leaves every file in place.
func (c *collection) open() error {
	c.slots = map[string]int{}
	ents, err := c.fs.ReadDir(c.dir)
	if err != nil {
		return fmt.Errorf("reading %s: %w", c.dir, err)
	}
	gens := map[string][]uint64{}
	for _, e := range ents {
		kind, rest, ok := strings.Cut(e.Name(), "-")
		if !ok || strings.HasSuffix(rest, ".tmp") {
			continue
		}
		g, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSuffix(rest, ".bin"), ".log"), 10, 64)
		if err == nil {
			gens[kind] = append(gens[kind], g)
		}
	}
	gen, committed, err := readCurrent(c.fs, c.dir)
	if err != nil {
		return err
	}
	if !committed {
		// Written before CURRENT existed: the newest snapshot was complete
		// (it was renamed into place), as the old recovery assumed.
		for _, g := range gens["snap"] {
			gen = max(gen, g)
		}
	}
	c.gen = gen
	if c.gen > 0 {
		if err := readSnapshot(c.fs, c.path("snap", c.gen), c); err != nil {
			return fmt.Errorf("collection %s generation %d: %w (the files are kept)", c.name, c.gen, err)
		}
		if st, err := c.fs.Stat(c.path("snap", c.gen)); err == nil {
			c.snapLen = st.Size()
		}
	}
	c.indexed = make([]bool, len(c.skus))
	if hnsw.Available {
		if err := c.openIndex(); err != nil {
			return err
		}
	}
	walPath := c.path("wal", c.gen)
	haveWAL, err := exists(c.fs, walPath)
	if err != nil {
		return fmt.Errorf("collection %s: %w", c.name, err)
	}
	if !haveWAL && committed && c.gen > 0 {
		// A snapshot commits only after its empty log is durable.
		return fmt.Errorf("collection %s: %s is missing although generation %d is committed (the files are kept)", c.name, walPath, c.gen)
	}
	if haveWAL {
		good, torn, err := replayWAL(c.fs, walPath, c.dim, func(r walRecord) error { return c.apply(r) })
		if err != nil {
			return fmt.Errorf("collection %s: %w", c.name, err)
		}
		if torn {
			c.log.Warn("cutting a torn wal tail (an unacknowledged write)", "collection", c.name, "offset", good)
			if err := c.truncateWAL(walPath, good); err != nil {
				return err
			}
		}
		c.walSize = good
	}
	c.wal, err = c.fs.OpenFile(walPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening wal: %w", err)
	}
	if !committed {
		if err := writeFileAtomic(c.fs, filepath.Join(c.dir, currentFile), encodeCurrent(c.gen)); err != nil {
			c.wal.Close()
			return fmt.Errorf("collection %s: committing generation %d: %w", c.name, c.gen, err)
		}
	}
	// Make what CURRENT names durable before deleting what it does not.
	if err := syncDir(c.fs, c.dir); err != nil {
		c.wal.Close()
		return err
	}
	for kind, gs := range gens {
		for _, g := range gs {
			if g != c.gen {
				_ = c.fs.Remove(c.path(kind, g))
			}
		}
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			_ = c.fs.Remove(filepath.Join(c.dir, e.Name()))
		}
	}
	return nil
}

func (c *collection) truncateWAL(path string, size int64) error {
	f, err := c.fs.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("collection %s: opening wal to cut its tail: %w", c.name, err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("collection %s: cutting wal tail: %w", c.name, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("collection %s: syncing wal after cutting its tail: %w", c.name, err)
	}
	return nil
}

func (c *collection) openIndex() error {
	if c.gen > 0 {
		ix, err := hnsw.Load(c.path("hnsw", c.gen), c.dim, c.opts.HNSW.Ef)
		if err == nil && ix.Len() <= len(c.skus) {
			c.ix = ix
			// A saved graph holds every slot that was ever indexed.
			for s := range ix.Len() {
				c.indexed[s] = true
			}
			return nil
		}
		if ix != nil {
			ix.Close()
		}
		c.log.Warn("rebuilding hnsw graph", "collection", c.name, "reason", err)
	}
	ix, err := hnsw.New(c.dim, max(len(c.skus), 1024), c.opts.HNSW)
	if err != nil {
		return fmt.Errorf("collection %s: %w", c.name, err)
	}
	c.ix = ix
	var labels []uint64
	var vecs []float32
	for s, l := range c.live {
		if l {
			labels = append(labels, uint64(s))
			vecs = append(vecs, c.vector(s)...)
			c.indexed[s] = true
		}
	}
	return ix.Add(vecs, labels, c.opts.Threads)
}

// apply changes memory and the graph for one logged request.
func (c *collection) apply(r walRecord) error {
	c.mu.Lock()
	var labels []uint64
	var vecs []float32
	var deleted []int
	for _, e := range r.entries {
		s, ok := c.slots[e.sku]
		switch r.op {
		case opUpsert:
			if !ok {
				s = c.newSlot(e.sku)
				c.indexed = append(c.indexed, false)
			}
			copy(c.vector(s), e.vector)
			c.payloads[s] = e.payload
			if !c.live[s] {
				c.live[s] = true
				c.nLive++
			}
			labels = append(labels, uint64(s))
			vecs = append(vecs, e.vector...)
		case opDelete:
			if ok && c.live[s] {
				c.live[s] = false
				c.nLive--
				deleted = append(deleted, s)
			}
		}
	}
	c.mu.Unlock()
	if c.ix == nil {
		return nil
	}
	// Small steps, so searches interleave with a large batch.
	const step = 128
	for i := 0; i < len(labels); i += step {
		j := min(i+step, len(labels))
		c.ixMu.Lock()
		err := c.ix.Add(vecs[i*c.dim:j*c.dim], labels[i:j], c.opts.Threads)
		for _, l := range labels[i:j] {
			c.indexed[l] = true
		}
		c.ixMu.Unlock()
		if err != nil {
			return err
		}
	}
	c.ixMu.Lock()
	defer c.ixMu.Unlock()
	for _, s := range deleted {
		if c.indexed[s] {
			if err := c.ix.MarkDeleted(uint64(s)); err != nil {
				return err
			}
		}
	}
	return nil
}

// write logs a request durably, then applies it. After a failed append or
// fsync the log may end in a record that is not durable: nothing is
// appended after it, and the collection refuses writes until restart, when
// replay decides what the log holds.
func (c *collection) write(r walRecord) error {
	rec, err := encodeRecord(r)
	if err != nil {
		return err
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.wal == nil {
		return store.NotFound("collection %q is closed", c.name)
	}
	if c.failed != nil {
		return c.readOnly()
	}
	if _, err := c.wal.Write(rec); err != nil {
		c.fail("appending to the wal", err)
		return c.readOnly()
	}
	if err := c.wal.Sync(); err != nil {
		c.fail("syncing the wal", err)
		return c.readOnly()
	}
	c.walSize += int64(len(rec))
	if err := c.apply(r); err != nil {
		return store.Unavailable(err, "applying write to %s", c.name)
	}
	if c.walSize > max(c.opts.SnapshotBytes, c.snapLen/4) {
		if err := c.snapshotLocked(); err != nil {
			c.log.Error("snapshot failed", "collection", c.name, "err", err, "refusing_writes", c.failed != nil)
		}
	}
	return nil
}

func (c *collection) fail(what string, err error) {
	c.failed = fmt.Errorf("%s: %w", what, err)
	c.log.Error("storage failure: the collection refuses writes until the service restarts",
		"collection", c.name, "err", c.failed)
}

// writable is nil unless the collection refuses writes.
func (c *collection) writable() error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.failed != nil {
		return c.readOnly()
	}
	return nil
}

func (c *collection) readOnly() error {
	return store.StorageFailed(c.failed, "collection %s refuses writes after a storage failure until the service restarts", c.name)
}

// snapshotLocked writes generation gen+1 (graph, snapshot, empty log, each
// fsynced, then the directory) and commits it by replacing CURRENT. A
// failure before the commit leaves the current generation and its log in
// charge, so writes go on; a failure at the commit leaves it unknown which
// generation a restart loads, so the collection refuses writes (both are
// complete, and neither is deleted). The caller holds writeMu.
func (c *collection) snapshotLocked() error {
	if c.failed != nil {
		return c.readOnly()
	}
	next := c.gen + 1
	var wal File
	abandon := func(err error) error {
		if wal != nil {
			wal.Close()
		}
		for _, kind := range []string{"wal", "snap", "hnsw"} {
			_ = c.fs.Remove(c.path(kind, next))
		}
		return fmt.Errorf("snapshot of %s (generation %d not committed, the log keeps every write): %w", c.name, next, err)
	}
	if c.ix != nil {
		c.ixMu.RLock()
		err := c.ix.Save(c.path("hnsw", next))
		c.ixMu.RUnlock()
		if err != nil {
			return abandon(err)
		}
		if err := fsyncFile(c.fs, c.path("hnsw", next)); err != nil {
			return abandon(err)
		}
	}
	c.mu.RLock()
	err := writeSnapshot(c.fs, c.path("snap", next), c)
	c.mu.RUnlock()
	if err != nil {
		return abandon(err)
	}
	wal, err = c.fs.OpenFile(c.path("wal", next), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o644)
	if err != nil {
		return abandon(fmt.Errorf("creating wal: %w", err))
	}
	if err := wal.Sync(); err != nil {
		return abandon(fmt.Errorf("syncing wal: %w", err))
	}
	if err := syncDir(c.fs, c.dir); err != nil {
		return abandon(err)
	}
	if err := writeFileAtomic(c.fs, filepath.Join(c.dir, currentFile), encodeCurrent(next)); err != nil {
		if !errors.Is(err, errUncertain) {
			return abandon(err)
		}
		wal.Close()
		c.fail(fmt.Sprintf("committing generation %d", next), err)
		return c.readOnly()
	}
	old := c.gen
	c.wal.Close()
	c.wal, c.walSize, c.gen = wal, 0, next
	if st, err := c.fs.Stat(c.path("snap", next)); err == nil {
		c.snapLen = st.Size()
	}
	for _, kind := range []string{"wal", "snap", "hnsw"} {
		_ = c.fs.Remove(c.path(kind, old))
	}
	return nil
}

// close snapshots when the log is not empty and releases files and graph.
func (c *collection) close(snapshot bool) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	var err error
	if snapshot && c.wal != nil && c.walSize > 0 && c.failed == nil {
		err = c.snapshotLocked()
	}
	if c.wal != nil {
		c.wal.Close()
		c.wal = nil
	}
	c.ixMu.Lock()
	if c.ix != nil {
		c.ix.Close()
		c.ix = nil
	}
	c.ixMu.Unlock()
	return err
}

func (c *collection) get(sku string) (store.Point, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	s, ok := c.slots[sku]
	if !ok || !c.live[s] {
		return store.Point{}, false
	}
	return store.Point{SKU: sku, Vector: append([]float32(nil), c.vector(s)...), Payload: maps.Clone(c.payloads[s])}, true
}

// search answers a query: an exact scan for small collections or narrow
// filters, else the HNSW graph with over-fetch for filters and exclusions.
func (c *collection) search(ctx context.Context, q store.Query) ([]store.Hit, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	need := q.TopK + q.Offset
	if need <= 0 {
		return []store.Hit{}, nil
	}
	exclude := -1
	if q.ExcludeSKU != "" {
		if s, ok := c.slots[q.ExcludeSKU]; ok {
			exclude = s
		}
	}
	keep := func(s int) bool {
		return c.live[s] && s != exclude && q.Filter.Match(c.payloads[s])
	}
	var res []flat.Result
	useGraph := c.ix != nil && c.nLive >= c.opts.ExactThreshold
	if useGraph && q.Filter != nil {
		matching := 0
		for s := range c.skus {
			if keep(s) {
				matching++
			}
		}
		if matching < c.opts.ExactThreshold {
			useGraph = false
		}
	}
	if useGraph {
		var ok bool
		var err error
		res, ok, err = c.graphSearch(q.Vector, need, keep)
		if err != nil {
			return nil, err
		}
		useGraph = ok
	}
	if !useGraph {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		res = flat.Scan(q.Vector, len(c.skus), need, func(s int) []float32 {
			if !keep(s) {
				return nil
			}
			return c.vector(s)
		})
	}
	hits := make([]store.Hit, 0, len(res))
	for i, r := range res {
		if i < q.Offset {
			continue
		}
		if q.MinScore != nil && r.Score < *q.MinScore {
			break
		}
		h := store.Hit{SKU: c.skus[r.Slot], Score: r.Score, Payload: maps.Clone(c.payloads[r.Slot])}
		if q.WithVectors {
			h.Vector = append([]float32(nil), c.vector(r.Slot)...)
		}
		hits = append(hits, h)
	}
	return hits, nil
}

// graphSearch asks the graph for more candidates until need of them pass
// keep; ok=false means the scan answers better (too few matches reachable,
// or so many candidates needed that scanning is cheaper).
func (c *collection) graphSearch(q []float32, need int, keep func(int) bool) ([]flat.Result, bool, error) {
	c.ixMu.RLock()
	defer c.ixMu.RUnlock()
	total := c.ix.Len()
	k := min(need+8, total)
	for k > 0 {
		labels, _, err := c.ix.Search(q, k)
		if err != nil {
			return nil, false, err
		}
		t := flat.NewTopK(need)
		n := 0
		for _, l := range labels {
			s := int(l)
			if s >= len(c.skus) || !keep(s) {
				continue
			}
			n++
			// Exact rescoring keeps scores identical to the scan path.
			t.Offer(s, flat.Dot(q, c.vector(s)))
		}
		if n >= need {
			return t.Sorted(), true, nil
		}
		if k >= total || (k*4 > total/2 && total > 4*c.opts.ExactThreshold) {
			return nil, false, nil
		}
		k = min(k*4, total)
	}
	return nil, false, nil
}

func sortedNames[M ~map[string]V, V any](m M) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
