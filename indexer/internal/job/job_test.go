package job

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lookalike-dev/lookalike/indexer/internal/testcat"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1/embedv1test"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1/preprocessv1test"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1/searchv1test"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"
	"github.com/lookalike-dev/lookalike/shared/safefetch"
)

const modelA, modelB = "fake-a-v1", "fake-b-v1"

type env struct {
	pre *preprocessv1test.Server
	emb *embedv1test.Server
	sea *searchv1test.Server
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{pre: preprocessv1test.New().Serve(), emb: embedv1test.New(testcat.Models(16, modelA, modelB)...).Serve(), sea: searchv1test.New().Serve()}
	t.Cleanup(func() { e.pre.Close(); e.emb.Close(); e.sea.Close() })
	return e
}

func (e *env) target(model string) Target {
	return Target{Model: model, Catalog: "products", MakeAlias: true,
		Preprocess: &preprocessv1.Client{BaseURL: e.pre.URL()},
		Embed:      &embedv1.Client{BaseURL: e.emb.URL()},
		Search:     &searchv1.Client{BaseURL: e.sea.URL()}}
}

func (e *env) config(t *testing.T, catalogPath string) Config {
	return Config{
		Catalog: catalogPath, StateDir: filepath.Join(t.TempDir(), "state"),
		Targets:         []Target{e.target(modelA)},
		PreprocessBatch: 4, EmbedBatch: 8, UpsertBatch: 8, Linger: 5 * time.Millisecond,
		MaxErrorRatio: 0.5, CheckpointEvery: 20 * time.Millisecond,
	}
}

func readEntries(t *testing.T, dir string) []Entry {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Entry
	if err := ReadReport(f, func(e Entry) error { out = append(out, e); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkOutcome asserts the exact end state: search holds exactly the wanted
// SKUs with the winning payloads, the report lists each line once with the
// wanted failures, and the counts agree.
func checkOutcome(t *testing.T, e *env, sum Summary, stateDir string, want testcat.Want) {
	t.Helper()
	coll := searchv1.CollectionName("products", modelA)
	got := e.sea.Points(coll)
	if len(got) != len(want.Indexed) {
		t.Errorf("search holds %d points, want %d", len(got), len(want.Indexed))
	}
	for sku, title := range want.Indexed {
		p, ok := got[sku]
		if !ok {
			t.Errorf("SKU %s missing from search", sku)
			continue
		}
		if p.Payload["title"] != title || p.Payload["sku"] != sku {
			t.Errorf("SKU %s payload %v, want title %q", sku, p.Payload, title)
		}
	}
	entries := readEntries(t, stateDir)
	seen := map[int]bool{}
	failed := map[int]string{}
	var superseded []int
	for _, en := range entries {
		if seen[en.Line] {
			t.Errorf("line %d reported twice", en.Line)
		}
		seen[en.Line] = true
		switch en.Status {
		case StatusFailed:
			failed[en.Line] = en.Code
			if en.Reason == "" || en.Stage == "" {
				t.Errorf("line %d failed without stage or reason: %+v", en.Line, en)
			}
		case StatusSuperseded:
			superseded = append(superseded, en.Line)
		case StatusDone:
			if _, ok := want.Indexed[en.SKU]; !ok {
				t.Errorf("line %d reported done for unexpected SKU %q", en.Line, en.SKU)
			}
		}
	}
	if len(entries) != want.Lines {
		t.Errorf("report has %d lines, catalog %d", len(entries), want.Lines)
	}
	if !mapsEqual(failed, want.Failed) {
		t.Errorf("failed lines %v, want %v", failed, want.Failed)
	}
	slices.Sort(superseded)
	if !slices.Equal(superseded, want.Superseded) {
		t.Errorf("superseded lines %v, want %v", superseded, want.Superseded)
	}
	c := sum.Counts
	if c.Done != len(want.Indexed) || c.Failed != len(want.Failed) || c.Items != want.Items || c.Lines != want.Lines || c.Finished() != c.Items || c.Superseded != len(want.Superseded) {
		t.Errorf("counts %+v, want done %d failed %d items %d lines %d", c, len(want.Indexed), len(want.Failed), want.Items, want.Lines)
	}
	// distinct SKUs minus failed items == points in search
	if c.Items-c.Failed-c.Skipped != len(got) {
		t.Errorf("items %d - failed %d - skipped %d != %d points", c.Items, c.Failed, c.Skipped, len(got))
	}
}

func mapsEqual(a, b map[int]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestRunCatalogWithBadLinesAndImages(t *testing.T) {
	e := newEnv(t)
	path, want, err := testcat.Write(t.TempDir(), testcat.Options{Good: 30, Bad: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.config(t, path)
	j, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := j.Run(context.Background())
	if err != nil {
		t.Fatalf("run: %v (%+v)", err, sum)
	}
	if sum.State != StateCompleted {
		t.Fatalf("state %s", sum.State)
	}
	checkOutcome(t, e, sum, cfg.StateDir, want)
	// The identical image is reported, not skipped.
	var twin Entry
	for _, en := range readEntries(t, cfg.StateDir) {
		if en.SKU == "SAME-IMAGE" || (en.SKU == "SKU-00000" && en.DuplicateOf != "") {
			twin = en
		}
	}
	if twin.DuplicateKind != "phash" || (twin.DuplicateOf != "SKU-00000" && twin.DuplicateOf != "SAME-IMAGE") {
		t.Errorf("identical image not reported: %+v", twin)
	}
	if sum.Counts.Duplicates != 1 {
		t.Errorf("duplicates %d, want 1", sum.Counts.Duplicates)
	}
	if e.sea.Dim(searchv1.CollectionName("products", modelA)) != 16 || e.sea.Alias("products") != "products__"+modelA {
		t.Errorf("collection or alias not created: dim %d, alias %q", e.sea.Dim(searchv1.CollectionName("products", modelA)), e.sea.Alias("products"))
	}
}

func TestReferenceCatalog(t *testing.T) {
	shared := os.Getenv("LOOKALIKE_SHARED")
	if shared == "" {
		shared = filepath.Join("..", "..", "..", "..", "shared")
	}
	path := filepath.Join(shared, "catalog", "catalog.jsonl")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("reference catalog missing (set LOOKALIKE_SHARED): %v", err)
	}
	e := newEnv(t)
	cfg := e.config(t, path)
	j, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := j.Run(context.Background())
	if err != nil || sum.Counts.Done != 50 || e.sea.Count("products__"+modelA) != 50 {
		t.Fatalf("run: %v, summary %+v, points %d", err, sum, e.sea.Count("products__"+modelA))
	}
}

func TestStopAndResumeGivesExactCounts(t *testing.T) {
	for _, stopAfter := range []int{1, 7, 20, 33} {
		t.Run("stop_after_"+itoa(stopAfter), func(t *testing.T) {
			e := newEnv(t)
			path, want, err := testcat.Write(t.TempDir(), testcat.Options{Good: 40, Bad: true})
			if err != nil {
				t.Fatal(err)
			}
			cfg := e.config(t, path)
			cfg.StopAfter = stopAfter
			j, _ := New(cfg)
			sum, err := j.Run(context.Background())
			if !errors.Is(err, context.Canceled) || sum.State != StateCanceled {
				t.Fatalf("first run: %v %s", err, sum.State)
			}
			cp, err := ReadCheckpoint(cfg.StateDir)
			if err != nil || cp.State != StateCanceled || cp.Counts.Finished() < stopAfter {
				t.Fatalf("checkpoint %+v %v", cp, err)
			}
			// Without Resume the state dir is refused.
			cfg.StopAfter = 0
			if j, _ := New(cfg); true {
				if _, err := j.Run(context.Background()); !errors.Is(err, ErrRefused) {
					t.Fatalf("run without resume over a checkpoint: %v", err)
				}
			}
			cfg.Resume = true
			j, _ = New(cfg)
			sum, err = j.Run(context.Background())
			if err != nil || !sum.Resumed {
				t.Fatalf("resume: %v %+v", err, sum)
			}
			checkOutcome(t, e, sum, cfg.StateDir, want)
			// A completed job resumed again does nothing.
			before := e.sea.Upserts()
			j, _ = New(cfg)
			if sum2, err := j.Run(context.Background()); err != nil || sum2.State != StateCompleted || e.sea.Upserts() != before {
				t.Fatalf("resuming a completed job: %v %+v, upserts %d -> %d", err, sum2, before, e.sea.Upserts())
			}
		})
	}
}

func itoa(i int) string { return strings.TrimSpace(strings.Repeat(" ", 0) + fmtInt(i)) }

func fmtInt(i int) string {
	if i == 0 {
		return "0"
	}
	s := ""
	for i > 0 {
		s = string(rune('0'+i%10)) + s
		i /= 10
	}
	return s
}

// A crash leaves report lines past the checkpoint; a resume truncates them
// and replays the in-flight items, so nothing is reported twice.
func TestResumeTruncatesReportPastCheckpoint(t *testing.T) {
	e := newEnv(t)
	path, want, err := testcat.Write(t.TempDir(), testcat.Options{Good: 20, Bad: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.config(t, path)
	cfg.StopAfter = 10
	j, _ := New(cfg)
	_, _ = j.Run(context.Background())
	cp, err := ReadCheckpoint(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	// Simulate a crash: a stale checkpoint from earlier (fewer bytes, the
	// last finished lines still in flight) beside the longer report.
	entries := readEntries(t, cfg.StateDir)
	var keep int64
	var inflight []int
	b, _ := os.ReadFile(filepath.Join(cfg.StateDir, ReportFile))
	lines := strings.SplitAfter(string(b), "\n")
	for i, en := range entries {
		if i < len(entries)-3 {
			keep += int64(len(lines[i]))
		} else {
			inflight = append(inflight, en.Line)
		}
	}
	cp.ReportBytes, cp.InFlight = keep, append(cp.InFlight, inflight...)
	cp.Counts = Counts{}
	writeCP(t, cfg.StateDir, cp)
	cfg.StopAfter, cfg.Resume = 0, true
	j, _ = New(cfg)
	sum, err := j.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkOutcome(t, e, sum, cfg.StateDir, want)
}

func writeCP(t *testing.T, dir string, cp Checkpoint) {
	t.Helper()
	tr := &tracker{}
	_ = tr
	b, err := jsonMarshal(cp)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(filepath.Join(dir, CheckpointFile), b); err != nil {
		t.Fatal(err)
	}
}

func TestRefusals(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	path, _, err := testcat.Write(dir, testcat.Options{Good: 5})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"no catalog", func(c *Config) { c.Catalog = "" }},
		{"missing catalog file", func(c *Config) { c.Catalog = filepath.Join(dir, "nope.jsonl") }},
		{"bad model name", func(c *Config) { c.Targets[0].Model = "Bad Name" }},
		{"unknown model", func(c *Config) { c.Targets[0].Model = "no-such-model" }},
		{"same target twice", func(c *Config) { c.Targets = append(c.Targets, c.Targets[0]) }},
		{"skip dupes with two targets", func(c *Config) {
			c.Targets = append(c.Targets, e.target(modelB))
			c.SkipDuplicates = true
		}},
		{"ratio over 1", func(c *Config) { c.MaxErrorRatio = 2 }},
		{"bad format", func(c *Config) { c.Format = "xml" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.config(t, path)
			tc.mod(&cfg)
			j, err := New(cfg)
			if err == nil {
				_, err = j.Run(context.Background())
			}
			if err == nil {
				t.Fatal("job ran")
			}
		})
	}
	// A changed catalog is refused on resume.
	cfg := e.config(t, path)
	cfg.StopAfter = 2
	j, _ := New(cfg)
	_, _ = j.Run(context.Background())
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"sku":"NEW","image":"img/p00000.png"}` + "\n")
	f.Close()
	cfg.StopAfter, cfg.Resume = 0, true
	j, _ = New(cfg)
	if _, err := j.Run(context.Background()); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "catalog changed") {
		t.Fatalf("resume over a changed catalog: %v", err)
	}
}

func TestErrorRatioFailsJob(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	var b strings.Builder
	for i := range 40 {
		b.WriteString(`{"sku":"S` + fmtInt(i) + `","image":"img/missing` + fmtInt(i) + `.png"}` + "\n")
	}
	os.WriteFile(filepath.Join(dir, "c.jsonl"), []byte(b.String()), 0o644)
	cfg := e.config(t, filepath.Join(dir, "c.jsonl"))
	cfg.MaxErrorRatio, cfg.MinItemsForRatio = 0.1, 10
	j, _ := New(cfg)
	sum, err := j.Run(context.Background())
	if !errors.Is(err, ErrTooManyErrors) || sum.State != StateFailed {
		t.Fatalf("got %v, state %s", err, sum.State)
	}
	if sum.Counts.Finished() >= 40 {
		t.Errorf("job did not stop early: %+v", sum.Counts)
	}
}

func TestOutageIsRetried(t *testing.T) {
	e := newEnv(t)
	path, want, _ := testcat.Write(t.TempDir(), testcat.Options{Good: 12})
	e.pre.FailNext(3)
	e.pre.FailItems(5) // per-item 503s are retried, not failed
	cfg := e.config(t, path)
	j, _ := New(cfg)
	sum, err := j.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkOutcome(t, e, sum, cfg.StateDir, want)
}

func TestServiceDownFailsJobResumably(t *testing.T) {
	e := newEnv(t)
	path, _, _ := testcat.Write(t.TempDir(), testcat.Options{Good: 12})
	e.pre.FailNext(1000)
	cfg := e.config(t, path)
	cfg.Retries = 2
	j, _ := New(cfg)
	sum, err := j.Run(context.Background())
	if err == nil || sum.State != StateFailed || sum.Counts.Failed != 0 {
		t.Fatalf("got %v %+v", err, sum)
	}
	e.pre.FailNext(0)
	cfg.Resume = true
	j, _ = New(cfg)
	if sum, err = j.Run(context.Background()); err != nil || sum.Counts.Done != 12 {
		t.Fatalf("resume: %v %+v", err, sum)
	}
}

func TestDedupe(t *testing.T) {
	tests := []struct {
		name     string
		near     float32
		skip     bool
		points   int
		skipped  int
		dupKinds []string
	}{
		{"report phash", 0, false, 12, 0, []string{"phash"}},
		{"skip phash", 0, true, 11, 1, []string{"phash"}},
		{"near threshold reports", 0.999, false, 12, 0, []string{"phash"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			dir := t.TempDir()
			_, _, _ = testcat.Write(dir, testcat.Options{Good: 11})
			b, _ := os.ReadFile(filepath.Join(dir, "catalog.jsonl"))
			b = append(b, []byte(`{"sku":"TWIN","image":"img/p00004.png"}`+"\n")...)
			os.WriteFile(filepath.Join(dir, "catalog.jsonl"), b, 0o644)
			cfg := e.config(t, filepath.Join(dir, "catalog.jsonl"))
			cfg.NearDuplicateScore, cfg.SkipDuplicates = tc.near, tc.skip
			cfg.UpsertBatch = 1
			j, _ := New(cfg)
			sum, err := j.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if n := e.sea.Count("products__" + modelA); n != tc.points || sum.Counts.Skipped != tc.skipped || sum.Counts.Duplicates != 1 {
				t.Fatalf("points %d skipped %d dups %d, want %d %d 1", n, sum.Counts.Skipped, sum.Counts.Duplicates, tc.points, tc.skipped)
			}
			var kinds []string
			for _, en := range readEntries(t, cfg.StateDir) {
				if en.DuplicateKind != "" {
					kinds = append(kinds, en.DuplicateKind)
				}
			}
			if !slices.Equal(kinds, tc.dupKinds) {
				t.Fatalf("duplicate kinds %v, want %v", kinds, tc.dupKinds)
			}
		})
	}
}

// Near duplicates by search score: a re-encode of the same pixels under a
// different file gives the same vector, found by search when phash is off.
func TestNearDuplicateBySearchScore(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	testcat.Write(dir, testcat.Options{Good: 6})
	// A run that indexes the catalog first.
	cfg := e.config(t, filepath.Join(dir, "catalog.jsonl"))
	j, _ := New(cfg)
	if _, err := j.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A second catalog whose only product has the pixels of p00002.
	os.WriteFile(filepath.Join(dir, "img", "copy.png"), testcat.Image(3, 24+2, 20+2), 0o644)
	os.WriteFile(filepath.Join(dir, "two.jsonl"), []byte(`{"sku":"COPY","image":"img/copy.png"}`+"\n"), 0o644)
	cfg2 := e.config(t, filepath.Join(dir, "two.jsonl"))
	cfg2.NearDuplicateScore, cfg2.SkipDuplicates = 0.99, true
	j, _ = New(cfg2)
	sum, err := j.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	en := readEntries(t, cfg2.StateDir)
	if sum.Counts.Skipped != 1 || len(en) != 1 || en[0].DuplicateKind != "near" || en[0].DuplicateOf != "SKU-00002" || en[0].DuplicateScore < 0.99 {
		t.Fatalf("near duplicate not found: %+v %+v", sum.Counts, en)
	}
}

func TestDualWriteTargets(t *testing.T) {
	e := newEnv(t)
	path, want, _ := testcat.Write(t.TempDir(), testcat.Options{Good: 15, Bad: true})
	cfg := e.config(t, path)
	b := e.target(modelB)
	b.MakeAlias = true // must not move the existing alias
	cfg.Targets = append(cfg.Targets, b)
	j, _ := New(cfg)
	sum, err := j.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkOutcome(t, e, sum, cfg.StateDir, want)
	pa, pb := e.sea.Points("products__"+modelA), e.sea.Points("products__"+modelB)
	if len(pb) != len(pa) {
		t.Fatalf("target B has %d points, A %d", len(pb), len(pa))
	}
	for sku, p := range pa {
		if slices.Equal(p.Vector, pb[sku].Vector) {
			t.Fatalf("SKU %s has the same vector in both spaces", sku)
		}
	}
	if e.sea.Alias("products") != "products__"+modelA {
		t.Fatalf("alias moved to %s", e.sea.Alias("products"))
	}
}

// The embedder gets full batches when it is the bottleneck.
func TestEmbedGetsFullBatches(t *testing.T) {
	e := newEnv(t)
	e.emb.SetLatency(80 * time.Millisecond)
	path, _, _ := testcat.Write(t.TempDir(), testcat.Options{Good: 160})
	cfg := e.config(t, path)
	cfg.EmbedBatch, cfg.PreprocessBatch, cfg.Linger = 16, 8, 50*time.Millisecond
	j, _ := New(cfg)
	if _, err := j.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	full := 0
	for _, n := range e.emb.BatchSizes() {
		if n == 16 {
			full++
		}
	}
	// All but the warm-up batch of each embed worker and the tail are full.
	if len(e.emb.BatchSizes()) < 8 || full < len(e.emb.BatchSizes())-3 {
		t.Fatalf("batch sizes %v: want all but warm-up and tail full", e.emb.BatchSizes())
	}
}

func TestImageURLs(t *testing.T) {
	e := newEnv(t)
	imgs := map[string][]byte{"/a.png": testcatImage(1), "/b.png": testcatImage(2)}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := imgs[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	defer origin.Close()
	dir := t.TempDir()
	cat := `{"sku":"A","image":"` + origin.URL + `/a.png"}
{"sku":"B","image":"b.png"}
{"sku":"C","image":"` + origin.URL + `/missing.png"}
{"sku":"D","image":"http://169.254.169.254/latest/meta-data"}
`
	os.WriteFile(filepath.Join(dir, "c.jsonl"), []byte(cat), 0o644)
	cfg := e.config(t, filepath.Join(dir, "c.jsonl"))
	cfg.CatalogURL = origin.URL + "/catalogs/c.jsonl" // "b.png" resolves against it... to /catalogs/b.png: missing
	cfg.Fetcher = safefetch.New(safefetch.Options{AllowHosts: []string{"127.0.0.1"}, AllowPrivate: true})
	cfg.MaxErrorRatio = 1
	j, _ := New(cfg)
	sum, err := j.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]string{}
	for _, en := range readEntries(t, cfg.StateDir) {
		codes[en.SKU] = en.Status + "/" + en.Code
	}
	want := map[string]string{"A": "done/", "B": "failed/fetch_failed", "C": "failed/fetch_failed", "D": "failed/url_not_allowed"}
	if len(codes) != 4 || codes["A"] != want["A"] || codes["B"] != want["B"] || codes["C"] != want["C"] || codes["D"] != want["D"] {
		t.Fatalf("outcomes %v, want %v", codes, want)
	}
	if sum.Counts.Done != 1 {
		t.Fatalf("counts %+v", sum.Counts)
	}
}

func testcatImage(seed uint64) []byte { return testcat.Image(seed, 30, 30) }

func TestHostLimiter(t *testing.T) {
	l := newHostLimiter(50, 1)
	start := time.Now()
	for range 6 {
		if err := l.wait(context.Background(), "a.example"); err != nil {
			t.Fatal(err)
		}
	}
	// Another host is not held back by the first.
	t0 := time.Now()
	if err := l.wait(context.Background(), "b.example"); err != nil || time.Since(t0) > 15*time.Millisecond {
		t.Fatalf("second host waited %v (%v)", time.Since(t0), err)
	}
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Fatalf("6 fetches at 50/s burst 1 took %v, want >= 100ms", d)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.json")
	for _, s := range []string{"one", "two"} {
		if err := WriteFileAtomic(p, []byte(s)); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(p); string(b) != s {
			t.Fatalf("read %q want %q", b, s)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("temp files left: %v", ents)
	}
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// The index path asks preprocess for uint8 levels when embed takes them
// (a quarter of the bytes on both hops), and falls back to float32 when a
// preprocess older than uint8 refuses the dtype: the same vectors either way.
func TestWireDTypes(t *testing.T) {
	run := func(floatOnly bool) (*env, map[string]searchv1.Point) {
		e := newEnv(t)
		e.pre.SetFloatOnly(floatOnly)
		path, want, err := testcat.Write(t.TempDir(), testcat.Options{Good: 24})
		if err != nil {
			t.Fatal(err)
		}
		cfg := e.config(t, path)
		j, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		sum, err := j.Run(context.Background())
		if err != nil || sum.State != StateCompleted {
			t.Fatalf("run (float only %v): %v (%+v)", floatOnly, err, sum)
		}
		checkOutcome(t, e, sum, cfg.StateDir, want)
		return e, e.sea.Points(searchv1.CollectionName("products", modelA))
	}
	narrow, got := run(false)
	if narrow.pre.Asked("float32") != 0 || narrow.pre.Asked("uint8") == 0 || narrow.emb.DTypes("float32") != 0 || narrow.emb.DTypes("uint8") == 0 {
		t.Errorf("asked preprocess for %d float32 and %d uint8 batches; embed got %v, want uint8 only",
			narrow.pre.Asked("float32"), narrow.pre.Asked("uint8"), narrow.emb.DTypes("uint8"))
	}
	old, want := run(true)
	if old.pre.Asked("uint8") == 0 || old.pre.Asked("float32") == 0 || old.emb.DTypes("uint8") != 0 {
		t.Errorf("older preprocess: asked %d uint8 and %d float32 batches; embed got %v, want a fall back to float32",
			old.pre.Asked("uint8"), old.pre.Asked("float32"), old.emb.DTypes("uint8"))
	}
	if len(got) != len(want) || len(got) == 0 {
		t.Fatalf("%d points with uint8, %d with float32", len(got), len(want))
	}
	for sku, p := range want {
		if !slices.Equal(got[sku].Vector, p.Vector) {
			t.Fatalf("SKU %s: uint8 and float32 tensors gave different vectors", sku)
		}
	}
}

// Around a fall back, one embed batch may hold uint8 rows and float32 rows:
// the uint8 ones are widened as embed would.
func TestBatchTensorWidensMixedRows(t *testing.T) {
	spec := testcat.Spec()
	l := &lane{model: spec}
	n := 3 * spec.Width * spec.Height
	levels := make([]byte, n)
	for i := range levels {
		levels[i] = byte(i * 7)
	}
	wide := make([]byte, 4*n)
	if err := spec.Widen(wide, levels); err != nil {
		t.Fatal(err)
	}
	shape := append([]int{3}, spec.Shape(1)[1:]...)
	tt, err := l.batchTensor(shape, []*row{{data: levels, dtype: tensorv1.Uint8}, {data: wide, dtype: tensorv1.Float32}, {data: levels, dtype: tensorv1.Uint8}})
	if err != nil {
		t.Fatal(err)
	}
	if tt.DType != tensorv1.Float32 || len(tt.Data) != 3*4*n {
		t.Fatalf("tensor %s of %d bytes", tt.DType, len(tt.Data))
	}
	for i := range 3 {
		if !bytes.Equal(tt.Data[i*4*n:(i+1)*4*n], wide) {
			t.Fatalf("row %d is not the float32 row", i)
		}
	}
	same, err := l.batchTensor(append([]int{2}, shape[1:]...), []*row{{data: levels, dtype: tensorv1.Uint8}, {data: levels, dtype: tensorv1.Uint8}})
	if err != nil || same.DType != tensorv1.Uint8 || len(same.Data) != 2*n {
		t.Fatalf("uint8 rows: %v, %s of %d bytes", err, same.DType, len(same.Data))
	}
	if _, err := l.batchTensor(shape, []*row{{data: wide, dtype: tensorv1.Float32}, {data: make([]byte, 2*n), dtype: tensorv1.Float16}}); err == nil {
		t.Fatal("float16 rows beside float32 ones joined")
	}
}
