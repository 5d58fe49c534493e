package embedded

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"

	"github.com/lookalike-dev/lookalike/search/internal/store"
)

const durDim = 8

func durVector(sku string) []float32 {
	v := make([]float32, durDim)
	h := uint32(2166136261)
	for i := range len(sku) {
		h = (h ^ uint32(sku[i])) * 16777619
	}
	for i := range v {
		h = h*1664525 + 1013904223
		v[i] = float32(h>>8)/float32(1<<24) + 0.01
	}
	return v
}

func sameDirection(a, b []float32) bool {
	var na, nb, dot float64
	for i := range a {
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
		dot += float64(a[i]) * float64(b[i])
	}
	return math.Abs(dot/math.Sqrt(na*nb)-1) < 1e-5
}

// abandon drops a store as a killed process would: no snapshot, files and
// the lock just closed.
func abandon(s *Store) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, c := range s.colls {
		c.writeMu.Lock()
		if c.wal != nil {
			c.wal.Close()
			c.wal = nil
		}
		c.writeMu.Unlock()
		c.ixMu.Lock()
		if c.ix != nil {
			c.ix.Close()
			c.ix = nil
		}
		c.ixMu.Unlock()
	}
	s.lock.Close()
}

// acked is what the store acknowledged: these must all be readable after a
// restart. A request that failed may or may not have happened, so what it
// touched is left out of both sets.
type acked struct {
	collection, alias bool
	present           map[string]bool
	deleted           map[string]bool
	// writes acknowledged after the collection answered storage_failed
	afterFailure []string
	// the second collection: acknowledged writes to it, and whether its
	// drop was acknowledged
	tmpPresent map[string]bool
	tmpDropped bool
}

const durColl = "dur__m"

// durWorkload creates a collection and an alias, upserts and deletes in
// batches with snapshots in between (a tiny SnapshotBytes, plus one forced),
// and records what was acknowledged.
func durWorkload(s *Store) acked {
	ctx := context.Background()
	a := acked{present: map[string]bool{}, deleted: map[string]bool{}, tmpPresent: map[string]bool{}}
	if _, err := s.CreateCollection(ctx, "dur", "m", durDim); err == nil {
		a.collection = true
	}
	if err := s.SwitchAlias(ctx, "dur", durColl); err == nil {
		a.alias = true
	}
	failed := false
	note := func(err error, what string) bool {
		if err == nil && failed {
			a.afterFailure = append(a.afterFailure, what)
		}
		if err != nil && store.KindOf(err) == store.KindUnavailable && strings.Contains(codeOf(err), searchv1.CodeStorageFailed) {
			failed = true
		}
		return err == nil
	}
	for b := range 10 {
		var pts []store.Point
		var skus []string
		for i := range 3 {
			sku := fmt.Sprintf("b%d-%d", b, i)
			pts = append(pts, store.Point{SKU: sku, Vector: durVector(sku), Payload: map[string]any{"batch": float64(b)}})
			skus = append(skus, sku)
		}
		if note(s.Upsert(ctx, durColl, pts), "upsert "+skus[0]) {
			for _, sku := range skus {
				a.present[sku] = true
			}
		}
		if b%3 == 2 {
			sku := fmt.Sprintf("b%d-0", b-1)
			was := a.present[sku]
			delete(a.present, sku)
			if note(s.Delete(ctx, durColl, sku), "delete "+sku) && was {
				a.deleted[sku] = true
			}
		}
		if b == 5 {
			_ = s.Snapshot()
		}
	}
	// A second collection, written, dropped, and written again: a write
	// acknowledged after a drop that failed must survive a restart.
	if _, err := s.CreateCollection(ctx, "tmp", "m", durDim); err == nil {
		for _, sku := range []string{"t0", "t1"} {
			if s.Upsert(ctx, tmpColl, []store.Point{{SKU: sku, Vector: durVector(sku)}}) == nil {
				a.tmpPresent[sku] = true
			}
		}
		a.tmpDropped = s.DropCollection(ctx, tmpColl) == nil
		if !a.tmpDropped && s.Upsert(ctx, tmpColl, []store.Point{{SKU: "t2", Vector: durVector("t2")}}) == nil {
			a.tmpPresent["t2"] = true
		}
	}
	if note(s.Upsert(ctx, durColl, []store.Point{{SKU: "last", Vector: durVector("last")}}), "upsert last") {
		a.present["last"] = true
	}
	return a
}

const tmpColl = "tmp__m"

func codeOf(err error) string {
	var se *store.Error
	if errors.As(err, &se) {
		return se.Code
	}
	return ""
}

// verify reopens dir on the real file system and checks every acknowledged
// write; then it writes once more and checks that survives a clean restart.
// It returns the open error, if the store refused to start.
func verify(t *testing.T, dir string, a acked) error {
	t.Helper()
	ctx := context.Background()
	s, err := Open(Options{Dir: dir, ExactThreshold: 1, HNSW: graphParams})
	if err != nil {
		return err
	}
	defer func() { s.Close() }()
	if len(a.afterFailure) > 0 {
		t.Errorf("acknowledged after the collection answered storage_failed: %v", a.afterFailure)
	}
	if !a.collection {
		return nil
	}
	if _, err := s.Collection(ctx, durColl); err != nil {
		t.Errorf("acknowledged collection lost: %v", err)
		return nil
	}
	if a.alias {
		if got, err := s.Alias(ctx, "dur"); err != nil || got != durColl {
			t.Errorf("acknowledged alias lost: %q %v", got, err)
		}
	}
	for sku := range a.present {
		p, err := s.Get(ctx, durColl, sku)
		if err != nil {
			t.Errorf("acknowledged upsert of %s lost: %v", sku, err)
			continue
		}
		if !sameDirection(p.Vector, durVector(sku)) {
			t.Errorf("%s: vector differs after restart", sku)
		}
	}
	for sku := range a.deleted {
		if _, err := s.Get(ctx, durColl, sku); err == nil {
			t.Errorf("acknowledged delete of %s undone", sku)
		}
	}
	_, tmpErr := s.Collection(ctx, tmpColl)
	switch {
	case a.tmpDropped && tmpErr == nil:
		t.Errorf("acknowledged drop of %s undone", tmpColl)
	case !a.tmpDropped && a.tmpPresent["t2"] && tmpErr != nil:
		t.Errorf("%s dropped by a drop that failed, after a write to it was acknowledged", tmpColl)
	case tmpErr == nil:
		for sku := range a.tmpPresent {
			if _, err := s.Get(ctx, tmpColl, sku); err != nil {
				t.Errorf("acknowledged upsert of %s to %s lost: %v", sku, tmpColl, err)
			}
		}
	}
	if err := s.Upsert(ctx, durColl, []store.Point{{SKU: "after", Vector: durVector("after")}}); err != nil {
		t.Errorf("write after restart: %v", err)
		return nil
	}
	if err := s.Close(); err != nil {
		t.Errorf("clean close after restart: %v", err)
	}
	s, err = Open(Options{Dir: dir})
	if err != nil {
		t.Errorf("second restart: %v", err)
		return nil
	}
	if _, err := s.Get(ctx, durColl, "after"); err != nil {
		t.Errorf("write after restart lost by a clean restart: %v", err)
	}
	return nil
}

// runFaulted runs the workload over ffs in a fresh dir, then drops the store
// as a power cut would (data not fsynced is lost).
func runFaulted(t *testing.T, ffs *faultFS) (string, acked) {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, FS: ffs, SnapshotBytes: 600, ExactThreshold: 1, HNSW: graphParams})
	var a acked
	if err == nil {
		a = durWorkload(s)
		abandon(s)
	}
	if err := ffs.dropUnsynced(); err != nil {
		t.Fatal(err)
	}
	return dir, a
}

// TestFaultMatrix injects one fault at every step that changes the disk, in
// a workload of creates, alias switches, upserts, deletes and snapshots:
// the step fails (EIO, a write leaving half its bytes), is done but reports
// EIO, or the process crashes there (and what was not fsynced is lost).
// After each, a restart must find every acknowledged write, or refuse to
// start with an error; nothing may be dropped silently.
func TestFaultMatrix(t *testing.T) {
	clean := newFaultFS(0, faultFail)
	dir, a := runFaulted(t, clean)
	if err := verify(t, dir, a); err != nil {
		t.Fatalf("the workload without faults must reopen: %v", err)
	}
	if len(a.present) < 20 || len(a.deleted) < 3 {
		t.Fatalf("the workload acknowledged only %d upserts and %d deletes", len(a.present), len(a.deleted))
	}
	steps := len(clean.steps)
	kinds := map[string]int{}
	for _, l := range clean.steps {
		kinds[l]++
	}
	type cell struct{ runs, kept, refused, bad int }
	matrix := map[string]map[faultMode]*cell{}
	modes := []faultMode{faultFail, faultLie, faultCrash}
	for k := 1; k <= steps; k++ {
		for _, mode := range modes {
			ffs := newFaultFS(k, mode)
			ok := t.Run(fmt.Sprintf("step%03d-%s-%s", k, clean.steps[k-1], mode), func(t *testing.T) {
				dir, a := runFaulted(t, ffs)
				err := verify(t, dir, a)
				if matrix[ffs.fired] == nil {
					matrix[ffs.fired] = map[faultMode]*cell{}
					for _, m := range modes {
						matrix[ffs.fired][m] = &cell{}
					}
				}
				c := matrix[ffs.fired][mode]
				c.runs++
				defer func() {
					if t.Failed() {
						c.bad++
					}
				}()
				if err != nil {
					c.refused++
					if !strings.Contains(err.Error(), "collection") {
						t.Errorf("refusal does not say what it refused: %v", err)
					}
					t.Logf("%s: start refused: %v", ffs, err)
					return
				}
				if !t.Failed() {
					c.kept++
				}
			})
			if !ok {
				t.Logf("failed with %s", ffs)
			}
		}
	}
	labels := slices.Sorted(func(yield func(string) bool) {
		for l := range matrix {
			if !yield(l) {
				return
			}
		}
	})
	var b strings.Builder
	fmt.Fprintf(&b, "fault matrix: %d steps x %d faults = %d runs\n", steps, len(modes), steps*len(modes))
	fmt.Fprintf(&b, "%-16s %24s %24s %24s\n", "step", faultFail+" (kept/refused)", faultLie+" (kept/refused)", faultCrash+" (kept/refused)")
	total := &cell{}
	for _, l := range labels {
		fmt.Fprintf(&b, "%-16s", l)
		for _, m := range modes {
			c := matrix[l][m]
			fmt.Fprintf(&b, " %24s", fmt.Sprintf("%d runs: %d/%d", c.runs, c.kept, c.refused))
			total.runs += c.runs
			total.kept += c.kept
			total.refused += c.refused
			total.bad += c.bad
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "total: %d runs, %d kept every acknowledged write, %d refused to start, %d lost or broke something\n", total.runs, total.kept, total.refused, total.bad)
	t.Log(b.String())
	if total.runs != steps*len(modes) {
		t.Fatalf("%d runs recorded, want %d", total.runs, steps*len(modes))
	}
}

func walOf(t *testing.T, dir string) string {
	t.Helper()
	wals, _ := filepath.Glob(filepath.Join(dir, "collections", durColl, "wal-*.log"))
	if len(wals) != 1 {
		t.Fatalf("wal files %v", wals)
	}
	return wals[0]
}

// After a failed fsync of the log the collection refuses writes, with
// storage_failed, even once the disk works again, and appends nothing after
// the record whose durability is unknown; reads go on. A restart recovers.
func TestFailedWALSyncRefusesWritesUntilRestart(t *testing.T) {
	for _, fault := range []struct {
		step string
		mode faultMode
	}{{"wal.sync", faultFail}, {"wal.write", faultFail}, {"wal.write", faultLie}} {
		t.Run(fault.step+"-"+string(fault.mode), func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			ffs := newFaultFS(0, faultFail)
			s, err := Open(Options{Dir: dir, FS: ffs})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.CreateCollection(ctx, "dur", "m", durDim); err != nil {
				t.Fatal(err)
			}
			if err := s.Upsert(ctx, durColl, []store.Point{{SKU: "a", Vector: durVector("a")}}); err != nil {
				t.Fatal(err)
			}
			ffs.armAt(fault.step, 1, fault.mode)
			err = s.Upsert(ctx, durColl, []store.Point{{SKU: "b", Vector: durVector("b")}})
			if codeOf(err) != searchv1.CodeStorageFailed || store.KindOf(err) != store.KindUnavailable {
				t.Fatalf("write hitting a failed %s: %v, want storage_failed", fault.step, err)
			}
			st, _ := os.Stat(walOf(t, dir))
			for _, sku := range []string{"c", "d"} {
				if err := s.Upsert(ctx, durColl, []store.Point{{SKU: sku, Vector: durVector(sku)}}); codeOf(err) != searchv1.CodeStorageFailed {
					t.Fatalf("write after the failure: %v, want storage_failed", err)
				}
			}
			if err := s.Delete(ctx, durColl, "a"); codeOf(err) != searchv1.CodeStorageFailed {
				t.Fatalf("delete after the failure: %v, want storage_failed", err)
			}
			if st2, _ := os.Stat(walOf(t, dir)); st2.Size() != st.Size() {
				t.Fatalf("the log grew from %d to %d bytes after the failure", st.Size(), st2.Size())
			}
			if _, err := s.Get(ctx, durColl, "a"); err != nil {
				t.Fatalf("reads must go on: %v", err)
			}
			if hits, err := s.Search(ctx, durColl, store.Query{Vector: durVector("a"), TopK: 1}); err != nil || len(hits) != 1 {
				t.Fatalf("search must go on: %v %v", hits, err)
			}
			if err := s.Close(); err != nil {
				t.Logf("close of a failed store: %v", err)
			}
			if err := ffs.dropUnsynced(); err != nil {
				t.Fatal(err)
			}
			s2, err := Open(Options{Dir: dir})
			if err != nil {
				t.Fatalf("restart: %v", err)
			}
			defer s2.Close()
			if _, err := s2.Get(ctx, durColl, "a"); err != nil {
				t.Fatalf("acknowledged write lost: %v", err)
			}
			if err := s2.Upsert(ctx, durColl, []store.Point{{SKU: "e", Vector: durVector("e")}}); err != nil {
				t.Fatalf("writes after restart: %v", err)
			}
		})
	}
}

// writeLog leaves a collection with four records in its log and no
// snapshot, as a killed process would, and returns the log and the record
// boundaries.
func writeLog(t *testing.T, dir string) (string, []int64) {
	t.Helper()
	ctx := context.Background()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateCollection(ctx, "dur", "m", durDim); err != nil {
		t.Fatal(err)
	}
	wal := walOf(t, dir)
	bounds := []int64{0}
	for _, sku := range []string{"r0", "r1", "r2", "r3"} {
		if err := s.Upsert(ctx, durColl, []store.Point{{SKU: sku, Vector: durVector(sku), Payload: map[string]any{"category": "c"}}}); err != nil {
			t.Fatal(err)
		}
		st, _ := os.Stat(wal)
		bounds = append(bounds, st.Size())
	}
	abandon(s)
	return wal, bounds
}

// A torn tail (a record cut short by the end of the log, or a zero-filled
// tail) is cut and the earlier records replayed; any other damage refuses
// to open and leaves the log as it was.
func TestWALDamage(t *testing.T) {
	ctx := context.Background()
	type damage func(b []byte, bounds []int64) []byte
	flip := func(at func(bounds []int64) int64) damage {
		return func(b []byte, bounds []int64) []byte {
			b[at(bounds)] ^= 0x10
			return b
		}
	}
	tests := []struct {
		name   string
		damage damage
		torn   bool
		kept   []string // readable after a successful open
	}{
		{"bit flipped in a mid-log length", flip(func(bn []int64) int64 { return bn[1] }), false, nil},
		{"mid-log length made huge", flip(func(bn []int64) int64 { return bn[1] + 3 }), false, nil},
		{"bit flipped in a mid-log checksum", flip(func(bn []int64) int64 { return bn[1] + 5 }), false, nil},
		{"bit flipped in a mid-log body", flip(func(bn []int64) int64 { return bn[2] + 12 }), false, nil},
		{"bit flipped in the last record", flip(func(bn []int64) int64 { return bn[4] - 3 }), false, nil},
		{"bit flipped in the first record", flip(func(bn []int64) int64 { return 9 }), false, nil},
		{"zeroed sector mid-log", func(b []byte, bn []int64) []byte {
			copy(b[bn[1]:bn[2]], make([]byte, bn[2]-bn[1]))
			return b
		}, false, nil},
		{"complete record with a bad checksum at the end", func(b []byte, bn []int64) []byte {
			rec := slices.Clone(b[bn[3]:bn[4]])
			rec[len(rec)-1] ^= 1
			return append(b, rec...)
		}, false, nil},
		{"last record cut after its header", func(b []byte, bn []int64) []byte { return b[:bn[3]+8] }, true, []string{"r0", "r1", "r2"}},
		{"last record cut mid-header", func(b []byte, bn []int64) []byte { return b[:bn[3]+3] }, true, []string{"r0", "r1", "r2"}},
		{"last record cut one byte short", func(b []byte, bn []int64) []byte { return b[:bn[4]-1] }, true, []string{"r0", "r1", "r2"}},
		{"zero-filled tail", func(b []byte, bn []int64) []byte { return append(b, make([]byte, 4096)...) }, true, []string{"r0", "r1", "r2", "r3"}},
		{"half a record appended", func(b []byte, bn []int64) []byte {
			return append(b, b[bn[2]:bn[2]+(bn[3]-bn[2])/2]...)
		}, true, []string{"r0", "r1", "r2", "r3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			wal, bounds := writeLog(t, dir)
			b, err := os.ReadFile(wal)
			if err != nil {
				t.Fatal(err)
			}
			damaged := tc.damage(slices.Clone(b), bounds)
			if err := os.WriteFile(wal, damaged, 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := Open(Options{Dir: dir})
			if !tc.torn {
				if err == nil {
					s.Close()
					t.Fatal("a damaged log must refuse to open")
				}
				if !errors.Is(err, errCorruptWAL) || !strings.Contains(err.Error(), "offset") {
					t.Fatalf("refusal %v: want errCorruptWAL naming the offset", err)
				}
				after, _ := os.ReadFile(wal)
				if !bytes.Equal(after, damaged) {
					t.Fatal("a refused open changed the log")
				}
				return
			}
			if err != nil {
				t.Fatalf("a torn tail must be cut, not refused: %v", err)
			}
			defer s.Close()
			for _, sku := range tc.kept {
				if _, err := s.Get(ctx, durColl, sku); err != nil {
					t.Errorf("%s lost: %v", sku, err)
				}
			}
			if n, _ := s.Count(ctx, durColl); n != int64(len(tc.kept)) {
				t.Errorf("count %d, want %d", n, len(tc.kept))
			}
		})
	}
}

// A generation that was written but not committed (CURRENT still names the
// old one) is never loaded: the old snapshot plus its log are.
func TestUncommittedSnapshotIsNotLoaded(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ffs := newFaultFS(0, faultFail)
	s, err := Open(Options{Dir: dir, FS: ffs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateCollection(ctx, "dur", "m", durDim); err != nil {
		t.Fatal(err)
	}
	if err := s.Upsert(ctx, durColl, []store.Point{{SKU: "a", Vector: durVector("a")}}); err != nil {
		t.Fatal(err)
	}
	// The snapshot fails at the fsync of CURRENT.tmp, before the commit.
	ffs.armAt("current.sync", 1, faultFail)
	if err := s.Snapshot(); err == nil {
		t.Fatal("snapshot with a failed commit reported success")
	}
	// Leave a complete but uncommitted generation 1 (holding only a)
	// behind, as a crash between writing and committing it would.
	c := s.colls[durColl]
	c.writeMu.Lock()
	c.mu.RLock()
	err = writeSnapshot(OSFS{}, c.path("snap", 1), c)
	c.mu.RUnlock()
	c.writeMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	// The log still takes writes: generation 0 is in charge.
	if err := s.Upsert(ctx, durColl, []store.Point{{SKU: "b", Vector: durVector("b")}}); err != nil {
		t.Fatalf("write after a failed, uncommitted snapshot: %v", err)
	}
	abandon(s)
	s2, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for _, sku := range []string{"a", "b"} {
		if _, err := s2.Get(ctx, durColl, sku); err != nil {
			t.Fatalf("acknowledged %s lost: %v", sku, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "collections", durColl, "snap-00000000000000000001.bin")); err == nil {
		t.Fatal("the uncommitted generation was not cleaned up")
	}
}

// CURRENT: a data dir from before it existed opens on its newest snapshot
// and gains one; a damaged CURRENT, or a committed generation without its
// log, refuses to start with the files kept.
func TestCurrentPointer(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		damage func(t *testing.T, cdir string)
		opens  bool
	}{
		{"absent (written before CURRENT)", func(t *testing.T, cdir string) {
			if err := os.Remove(filepath.Join(cdir, currentFile)); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"damaged", func(t *testing.T, cdir string) {
			if err := os.WriteFile(filepath.Join(cdir, currentFile), []byte("LKGEN1 2 00000000\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"names a generation whose log is missing", func(t *testing.T, cdir string) {
			wals, _ := filepath.Glob(filepath.Join(cdir, "wal-*.log"))
			for _, w := range wals {
				if err := os.Remove(w); err != nil {
					t.Fatal(err)
				}
			}
		}, false},
		{"names a generation whose snapshot is missing", func(t *testing.T, cdir string) {
			snaps, _ := filepath.Glob(filepath.Join(cdir, "snap-*.bin"))
			for _, f := range snaps {
				if err := os.Remove(f); err != nil {
					t.Fatal(err)
				}
			}
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(Options{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.CreateCollection(ctx, "dur", "m", durDim); err != nil {
				t.Fatal(err)
			}
			for _, sku := range []string{"a", "b"} {
				if err := s.Upsert(ctx, durColl, []store.Point{{SKU: sku, Vector: durVector(sku)}}); err != nil {
					t.Fatal(err)
				}
				if err := s.Snapshot(); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Upsert(ctx, durColl, []store.Point{{SKU: "c", Vector: durVector("c")}}); err != nil {
				t.Fatal(err)
			}
			abandon(s)
			cdir := filepath.Join(dir, "collections", durColl)
			tc.damage(t, cdir)
			before, _ := os.ReadDir(cdir)
			s2, err := Open(Options{Dir: dir})
			if !tc.opens {
				if err == nil {
					s2.Close()
					t.Fatal("must refuse to start")
				}
				after, _ := os.ReadDir(cdir)
				if len(after) != len(before) {
					t.Fatalf("a refused start changed the files: %v -> %v", before, after)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			for _, sku := range []string{"a", "b", "c"} {
				if _, err := s2.Get(ctx, durColl, sku); err != nil {
					t.Fatalf("%s lost: %v", sku, err)
				}
			}
			if gen, ok, err := readCurrent(OSFS{}, cdir); err != nil || !ok || gen != 2 {
				t.Fatalf("CURRENT after the upgrade: gen %d ok %v err %v, want generation 2", gen, ok, err)
			}
		})
	}
}
