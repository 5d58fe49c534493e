package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"github.com/lookalike-dev/lookalike/shared/contract/gatewayv1"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lookalike-dev/lookalike/e2e/internal/stack"
)

// The two vector spaces: the stable model A (pooled features, 1280-d) and
// the canary B (the same network's logits, 1000-d): a vector of one means
// nothing in the other.
const (
	canaryA = "mobilenetv2-int8-v1"
	canaryB = "mobilenetv2-int8-logits-v1"
)

// canaryReport is the part of GET /v1/canary the test reads.
type canaryReport struct {
	Phase  string `json:"phase"`
	Stable string `json:"stable_model"`
	Canary string `json:"canary_model"`
	Spaces []struct {
		Role  string `json:"role"`
		Model string `json:"model"`
		Dim   int    `json:"dim"`
		Count int64  `json:"count"`
	} `json:"spaces"`
	BackfillProgress float64 `json:"backfill_progress"`
	Shadow           struct {
		Runs        int64   `json:"runs"`
		Errors      int64   `json:"errors"`
		Dropped     int64   `json:"dropped"`
		OverlapMean float64 `json:"overlap_at_10_mean"`
	} `json:"shadow"`
	Models []struct {
		Model      string  `json:"model"`
		Queries    int64   `json:"queries"`
		Errors     int64   `json:"errors"`
		LatencyP50 float64 `json:"latency_p50_ms"`
		TopScore50 float64 `json:"top_score_p50"`
	} `json:"models"`
}

func (r canaryReport) count(model string) int64 {
	for _, s := range r.Spaces {
		if s.Model == model {
			return s.Count
		}
	}
	return -1
}

// ranked is one answer: SKUs and scores, best first.
type ranked struct {
	SKUs   []string
	Scores []float64
}

func rankedOf(r gatewayv1.SearchResponse) ranked {
	var out ranked
	for _, h := range r.Results {
		out.SKUs = append(out.SKUs, h.SKU)
		out.Scores = append(out.Scores, float64(h.Score))
	}
	return out
}

// same reports whether two answers list the same SKUs in the same order
// with the same scores (to float32 noise).
func (a ranked) same(b ranked) bool {
	if len(a.SKUs) != len(b.SKUs) {
		return false
	}
	for i := range a.SKUs {
		if a.SKUs[i] != b.SKUs[i] || math.Abs(a.Scores[i]-b.Scores[i]) > 1e-4 {
			return false
		}
	}
	return true
}

func overlapAt10(a, b []string) float64 {
	a, b = a[:min(10, len(a))], b[:min(10, len(b))]
	in := map[string]bool{}
	for _, s := range b {
		in[s] = true
	}
	n := 0
	for _, s := range a {
		if in[s] {
			n++
		}
	}
	return float64(n) / float64(max(len(a), len(b), 1))
}

// TestCanaryRollout rolls the embedder out from A to B with both models
// live, in both topologies: one embed process serving both models, and B in
// its own embed deployment (CANARY_EMBED_URLS). It checks the backfill with
// concurrent dual writes, the 10% sticky split, that every answer comes from
// its own model's space, promote, rollback and the refusal of mismatches.
func TestCanaryRollout(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs in the full suite")
	}
	for _, tc := range []struct {
		name     string
		separate bool
	}{
		{"one embed serves both models", false},
		{"canary in its own embed deployment", true},
	} {
		t.Run(tc.name, func(t *testing.T) { canaryRollout(t, tc.separate) })
	}
}

func canaryRollout(t *testing.T, separate bool) {
	// Two cores run five services, a backfill and concurrent writes: the
	// gateway gets patient hop timeouts so a busy preprocess is not "down".
	gwEnv := []string{"CANARY_SHARE=0.10", "CANARY_MODEL=" + canaryB, "CANARY_SHADOW_RATE=0.3", "CANARY_STATE_TTL=200ms",
		"GATEWAY_RATE=0", "GATEWAY_ADMIN_RATE=0", "GATEWAY_REQUEST_TIMEOUT=60s", "GATEWAY_PREPROCESS_TIMEOUT=30s",
		"GATEWAY_EMBED_TIMEOUT=30s", "GATEWAY_SEARCH_TIMEOUT=15s", "GATEWAY_BREAKER_MIN_CALLS=50", "GATEWAY_DRAIN_DELAY=100ms"}
	repo, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	specs := "EMBED_MODELS_DIR=" + filepath.Join(repo, "embed", "models")
	quick := []string{"EMBED_WARMUP_FULL_BATCH=false", "EMBED_DRAIN_DELAY=100ms"}
	embedEnv := append([]string{specs, "EMBED_DEFAULT_MODEL=" + canaryA}, quick...) // every spec in the folder: both models
	if separate {
		embedEnv = append([]string{specs, "EMBED_MODELS=" + canaryA, "EMBED_DEFAULT_MODEL=" + canaryA}, quick...)
	}
	s := stack.New(t, stack.Options{Extra: map[string][]string{"gateway": gwEnv, "embed": embedEnv,
		"preprocess": {"PREPROCESS_DRAIN_DELAY=100ms"}, "search": {"SEARCH_DRAIN_DELAY=100ms"}}})
	embedB := s.URLOf("embed")
	if separate {
		p := s.AddEmbed(t, "embed-canary", append([]string{"EMBED_MODELS=" + canaryB, "EMBED_DEFAULT_MODEL=" + canaryB}, quick...)...)
		embedB = p.URL()
		gw := s.Procs["gateway"]
		gw.Env = append(gw.Env, "CANARY_EMBED_URLS="+embedB)
	}
	s.Start(t)
	ctx := context.Background()
	c := stack.NewClient(s.Gateway(), s.AdminKey)
	products, err := stack.ReadJSONL[stack.Product](s.Env.CatalogJL)
	if err != nil || len(products) != 50 {
		t.Fatalf("catalog: %d products, %v", len(products), err)
	}
	// The demo catalog's photos, scaled to 320 px: the same products,
	// without paying for decoding 6 MB photos hundreds of times.
	catDir, err := stack.Thumbnails(filepath.Dir(s.Env.CatalogJL), t.TempDir(), products, 320)
	if err != nil {
		t.Fatal(err)
	}
	images := make([][]byte, len(products))
	for i, p := range products {
		if images[i], err = os.ReadFile(filepath.Join(catDir, p.Image)); err != nil {
			t.Fatal(err)
		}
	}
	first, rest := products[:30], products[30:]
	cli := func(args ...string) stack.CommandResult {
		t.Helper()
		res, err := s.Command(ctx, 60*time.Second, "gateway", []string{"LOOKALIKE_GATEWAY_URL=" + s.Gateway(), "LOOKALIKE_ADMIN_KEY=" + s.AdminKey}, append([]string{"canary"}, args...)...)
		if err != nil || res.Exit != 0 {
			t.Fatalf("gateway canary %v: exit %d, %v\n%s\n%s", args, res.Exit, err, res.Stdout, res.Stderr)
		}
		return res
	}
	report := func() canaryReport {
		t.Helper()
		var r canaryReport
		if st, b, err := c.AdminJSON(http.MethodGet, "/v1/canary", nil, &r); err != nil || st != http.StatusOK {
			t.Fatalf("GET /v1/canary: %d %s %v", st, b, err)
		}
		return r
	}
	refused := func(a stack.Answer, err error, status int, code string) {
		t.Helper()
		var env stack.ErrorBody
		_ = json.Unmarshal(a.Body, &env)
		if err != nil || a.Status != status || env.Error.Code != code {
			t.Fatalf("want %d %s, got %d %s (%v)", status, code, a.Status, a.Body, err)
		}
	}

	// The stable catalog: 30 products in A's space.
	if err := c.IndexAll(catDir, first, 4); err != nil {
		t.Fatal(err)
	}
	if r := report(); r.Phase != "none" || r.Stable != canaryA || r.count(canaryA) != 30 {
		t.Fatalf("before the rollout: %+v", r)
	}

	t.Run("queries for a space that does not serve are refused", func(t *testing.T) {
		a, err := c.SearchAs(images[0], "x", "", "?model="+canaryB)
		refused(a, err, http.StatusBadRequest, "model_not_live")
		a, err = c.SearchAs(images[0], "x", "canary", "")
		refused(a, err, http.StatusConflict, "no_canary")
		// search itself never runs a query across spaces
		st, body := searchDirect(t, s.URLOf("search"), map[string]any{"model": canaryB, "dim": 1000, "vector": ones(1000)})
		if st != http.StatusBadRequest || !strings.Contains(body, "model_mismatch") {
			t.Fatalf("search with B's model against A's catalog: %d %s", st, body)
		}
		st, body = searchDirect(t, s.URLOf("search"), map[string]any{"model": canaryA, "dim": 1000, "vector": ones(1000)})
		if st != http.StatusBadRequest || !strings.Contains(body, "dimension_mismatch") {
			t.Fatalf("1000-d vector labelled as A: %d %s", st, body)
		}
	})

	// Start: B's space and dual writes; then the backfill job and 20 new
	// products written through the gateway at the same time.
	if out := cli("start", "--model", canaryB).Stdout; !strings.Contains(out, "backfill") {
		t.Fatalf("canary start printed:\n%s", out)
	}
	t.Run("backfill completes while writes continue; writes reach B", func(t *testing.T) {
		catPath, err := stack.WriteCatalog(catDir, t.TempDir(), first)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var job stack.CommandResult
		var jobErr error
		var jobDone time.Time
		wg.Go(func() {
			job, jobErr = s.Command(ctx, 150*time.Second, "indexer", []string{
				"INDEXER_CATALOG=" + catPath, "INDEXER_MODEL=" + canaryB, "INDEXER_MAKE_ALIAS=false",
				"INDEXER_STATE_DIR=" + filepath.Join(t.TempDir(), "state"), "INDEXER_PREPROCESS_URL=" + s.URLOf("preprocess"),
				"INDEXER_EMBED_URL=" + embedB, "INDEXER_SEARCH_URL=" + s.URLOf("search"),
				"INDEXER_FETCH_WORKERS=2", "INDEXER_PREPROCESS_WORKERS=1", "INDEXER_PREPROCESS_BATCH=4"}, "run")
			jobDone = time.Now()
		})
		var firstWrite, writesDone time.Time
		var writeErr error
		wg.Go(func() {
			for i, p := range rest { // one writer, retrying 503s as the API asks
				if writeErr = indexRetrying(c, catDir, p); writeErr != nil {
					break
				}
				if i == 0 {
					firstWrite = time.Now()
				}
			}
			writesDone = time.Now()
		})
		begin := time.Now()
		wg.Wait()
		if jobErr != nil || job.Exit != 0 {
			t.Fatalf("backfill: exit %d %v\n%s\n%s", job.Exit, jobErr, job.Stdout, stack.Tail(writeTemp(t, job.Stderr), 30))
		}
		if writeErr != nil {
			t.Fatalf("writes during the backfill: %v", writeErr)
		}
		var sum struct {
			State  string `json:"state"`
			Counts struct{ Done, Failed int }
		}
		if err := json.Unmarshal([]byte(job.LastLine()), &sum); err != nil || sum.State != "completed" || sum.Counts.Done != 30 || sum.Counts.Failed != 0 {
			t.Fatalf("backfill summary %q: %+v %v", job.LastLine(), sum, err)
		}
		ms := func(at time.Time) time.Duration { return at.Sub(begin).Round(time.Millisecond) }
		t.Logf("backfill of 30 done at +%v; 20 concurrent writes: first done at +%v, last at +%v", ms(jobDone), ms(firstWrite), ms(writesDone))
		if !firstWrite.Before(jobDone) {
			t.Fatal("no write happened while the backfill ran: the test did not test dual writes")
		}
		r := report()
		if r.Phase != "backfill" || r.count(canaryA) != 50 || r.count(canaryB) != 50 || r.BackfillProgress != 1 {
			t.Fatalf("after the backfill: %+v", r)
		}
		for i, p := range rest {
			a, err := c.SearchAs(images[30+i], "checker", "canary", "?top_k=3")
			if err != nil || a.Status != http.StatusOK || a.SearchResponse.Model != canaryB || a.Arm != "canary" ||
				len(a.Results) == 0 || a.Results[0].SKU != p.SKU || a.Results[0].Score < 0.99 {
				t.Fatalf("%s (written during the backfill) in B: %d %s", p.SKU, a.Status, a.Body)
			}
			st, b, _, err := c.Do(http.MethodGet, "/v1/products/"+p.SKU+"?model="+canaryB, "", nil, true)
			if err != nil || st != http.StatusOK || !bytes.Contains(b, []byte(`"dim":1000`)) {
				t.Fatalf("%s in B's space: %d %s", p.SKU, st, b)
			}
		}
		st, b, _ := c.AdminJSON(http.MethodPost, "/v1/canary/promote", map[string]any{}, nil)
		if st != http.StatusConflict || !bytes.Contains(b, []byte("canary_not_live")) {
			t.Fatalf("promote during the backfill: %d %s", st, b)
		}
	})
	if t.Failed() {
		return
	}
	if out := cli("serve").Stdout; !strings.Contains(out, "live") {
		t.Fatalf("canary serve printed:\n%s", out)
	}

	// Each image's answer in each space, asked with the override header.
	expect := map[string][]ranked{canaryA: make([]ranked, 50), canaryB: make([]ranked, 50)}
	var overlapSum float64
	for i, p := range products {
		for arm, model := range map[string]string{"stable": canaryA, "canary": canaryB} {
			a, err := c.SearchAs(images[i], "probe", arm, "")
			if err != nil || a.Status != http.StatusOK || a.SearchResponse.Model != model || a.Model != model || a.Arm != arm {
				t.Fatalf("%s forced %s: %d %s (headers %q %q)", p.SKU, arm, a.Status, a.Body, a.Arm, a.Model)
			}
			if len(a.Results) < 10 || a.Results[0].SKU != p.SKU || a.Results[0].Score < 0.99 {
				t.Fatalf("%s in %s: %s", p.SKU, model, a.Body)
			}
			expect[model][i] = rankedOf(a.SearchResponse)
		}
		overlapSum += overlapAt10(expect[canaryA][i].SKUs, expect[canaryB][i].SKUs)
	}
	differ := 0
	for i := range products {
		if !expect[canaryA][i].same(expect[canaryB][i]) {
			differ++
		}
	}
	if differ < 45 {
		t.Fatalf("only %d of 50 answers differ between the spaces: the canary is not a different space", differ)
	}
	t.Logf("overlap@10 between A and B over the 50 catalog images: %.3f", overlapSum/50)

	t.Run("10% sticky split: 200 clients, each answer from its own space", func(t *testing.T) {
		type result struct {
			a   stack.Answer
			err error
		}
		results := make([]result, 200)
		sem := make(chan struct{}, 4)
		var wg sync.WaitGroup
		for i := range results {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				a, err := c.SearchAs(images[i%50], fmt.Sprintf("e2e-client-%03d", i), "", "")
				results[i] = result{a, err}
			})
		}
		wg.Wait()
		canary := 0
		for i, r := range results {
			if r.err != nil || r.a.Status != http.StatusOK {
				t.Fatalf("query %d: %d %s %v", i, r.a.Status, r.a.Body, r.err)
			}
			model := r.a.SearchResponse.Model
			want := map[string]string{"stable": canaryA, "canary": canaryB}[r.a.Arm]
			if model != want || r.a.Model != model {
				t.Fatalf("query %d: arm %q answered by model %q (header %q)", i, r.a.Arm, model, r.a.Model)
			}
			if !rankedOf(r.a.SearchResponse).same(expect[model][i%50]) {
				t.Fatalf("query %d (%s): results are not %s's answer:\n got %v\nwant %v", i, r.a.Arm, model, rankedOf(r.a.SearchResponse), expect[model][i%50])
			}
			if r.a.Arm == "canary" {
				canary++
			}
		}
		share := float64(canary) / 200
		t.Logf("canary answered %d of 200 queries (%.1f%%) at CANARY_SHARE=10%%", canary, 100*share)
		if share < 0.04 || share > 0.18 {
			t.Fatalf("canary share %.3f outside 0.04..0.18", share)
		}
		for i := range 40 { // sticky: a client's next query takes the same arm
			a, err := c.SearchAs(images[(i+7)%50], fmt.Sprintf("e2e-client-%03d", i), "", "")
			if err != nil || a.Arm != results[i].a.Arm {
				t.Fatalf("client %d moved from %s to %s (%v)", i, results[i].a.Arm, a.Arm, err)
			}
		}
		time.Sleep(500 * time.Millisecond) // let the last shadow queries finish
		r := report()
		t.Logf("shadow comparison: %d runs, %d errors, %d dropped, overlap@10 mean %.3f", r.Shadow.Runs, r.Shadow.Errors, r.Shadow.Dropped, r.Shadow.OverlapMean)
		if r.Shadow.Runs == 0 || r.Shadow.Errors != 0 || r.Shadow.OverlapMean <= 0 || r.Shadow.OverlapMean > 1 {
			t.Fatalf("shadow comparison: %+v", r.Shadow)
		}
		for _, m := range r.Models {
			t.Logf("model %s: %d queries, %d errors, p50 %.1f ms, top score p50 %.3f", m.Model, m.Queries, m.Errors, m.LatencyP50, m.TopScore50)
		}
		mc := stack.NewClient(s.Procs["gateway"].MetricsURL(), "")
		st, metrics, _, err := mc.Do(http.MethodGet, "/metrics", "", nil, false)
		if err != nil || st != http.StatusOK {
			t.Fatalf("metrics: %d %v", st, err)
		}
		for _, want := range []string{`lookalike_canary_queries_total{arm="canary"`, `lookalike_canary_query_duration_seconds_bucket{arm="canary"`,
			`lookalike_canary_top_score_bucket{arm="stable"`, `lookalike_canary_shadow_overlap_at_10_bucket{canary_model="` + canaryB,
			`lookalike_canary_writes_total{model="` + canaryB} {
			if !bytes.Contains(metrics, []byte(want)) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})
	if t.Failed() {
		return
	}

	allFrom := func(t *testing.T, model string) {
		t.Helper()
		for i := range 50 {
			a, err := c.SearchAs(images[i], fmt.Sprintf("e2e-client-%03d", i*4), "", "")
			if err != nil || a.Status != http.StatusOK || a.SearchResponse.Model != model || a.Arm != "stable" ||
				!rankedOf(a.SearchResponse).same(expect[model][i]) {
				t.Fatalf("query %d: want %s's answer, got %d %s (arm %q)", i, model, a.Status, a.Body, a.Arm)
			}
		}
	}

	t.Run("rollback: all queries use A", func(t *testing.T) {
		if out := cli("rollback").Stdout; !strings.Contains(out, "none") {
			t.Fatalf("canary rollback printed:\n%s", out)
		}
		cli("rollback") // idempotent
		allFrom(t, canaryA)
		a, err := c.SearchAs(images[0], "x", "", "?model="+canaryB)
		refused(a, err, http.StatusBadRequest, "model_not_live")
		if r := report(); r.Phase != "none" || r.count(canaryB) != 50 {
			t.Fatalf("after rollback (B kept): %+v", r)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("promote: all queries use B", func(t *testing.T) {
		var r canaryReport
		if st, b, err := c.AdminJSON(http.MethodPost, "/v1/canary", map[string]any{}, &r); err != nil || st != http.StatusOK || r.Phase != "backfill" || r.Canary != canaryB {
			t.Fatalf("start again (CANARY_MODEL): %d %s %v", st, b, err)
		}
		cli("serve")
		if out := cli("promote", "--model", canaryB).Stdout; !strings.Contains(out, "stable") {
			t.Fatalf("canary promote printed:\n%s", out)
		}
		cli("promote", "--model", canaryB) // idempotent
		if r = report(); r.Phase != "none" || r.Stable != canaryB {
			t.Fatalf("after promote: %+v", r)
		}
		allFrom(t, canaryB)
		a, err := c.SearchAs(images[0], "x", "", "?model="+canaryA)
		refused(a, err, http.StatusBadRequest, "model_not_live")
		// New writes go to B's space, and are found there.
		if err := c.IndexProduct(catDir, stack.Product{SKU: "SK-NEW-AFTER-PROMOTE", Title: "after", Category: "x", Price: 1, Image: products[3].Image}); err != nil {
			t.Fatal(err)
		}
		a, err = c.SearchAs(images[3], "x", "", "?top_k=2")
		if err != nil || a.SearchResponse.Model != canaryB || len(a.Results) < 2 ||
			(a.Results[0].SKU != "SK-NEW-AFTER-PROMOTE" && a.Results[1].SKU != "SK-NEW-AFTER-PROMOTE") {
			t.Fatalf("write after promote not found in B: %s %v", a.Body, err)
		}
		// A vector of B's space labelled as A's is refused by search.
		st, body := searchDirect(t, s.URLOf("search"), map[string]any{"model": canaryA, "vector": pointVector(t, s.URLOf("search"), products[0].SKU, canaryB)})
		if st != http.StatusBadRequest || !strings.Contains(body, "dimension_mismatch") {
			t.Fatalf("B vector as A: %d %s", st, body)
		}
	})
}

func ones(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = 1
	}
	return v
}

// searchDirect posts a query to search itself (not the gateway).
func searchDirect(t *testing.T, searchURL string, req map[string]any) (int, string) {
	t.Helper()
	b, _ := json.Marshal(req)
	resp, err := http.Post(searchURL+"/v1/catalogs/products/search", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.String()
}

// pointVector reads a stored vector from search.
func pointVector(t *testing.T, searchURL, sku, model string) []float32 {
	t.Helper()
	resp, err := http.Get(searchURL + "/v1/catalogs/products/points/" + sku + "?model=" + model)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p struct {
		Vector json.RawMessage `json:"vector"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("point %s in %s: %d %v", sku, model, resp.StatusCode, err)
	}
	var v []float32
	var b64 string
	if json.Unmarshal(p.Vector, &b64) == nil {
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+4 <= len(raw); i += 4 {
			v = append(v, math.Float32frombits(uint32(raw[i])|uint32(raw[i+1])<<8|uint32(raw[i+2])<<16|uint32(raw[i+3])<<24))
		}
	} else if err := json.Unmarshal(p.Vector, &v); err != nil {
		t.Fatal(err)
	}
	if len(v) != 1000 {
		t.Fatalf("B vector of %d values", len(v))
	}
	return v
}

func writeTemp(t *testing.T, s string) string {
	p := filepath.Join(t.TempDir(), "stderr.txt")
	_ = os.WriteFile(p, []byte(s), 0o644)
	return p
}

// indexRetrying writes a product through the gateway, retrying what the
// API says to retry (429, 503: e.g. a dual write that did not reach one
// space; the upsert is idempotent).
func indexRetrying(c *stack.Client, catDir string, p stack.Product) error {
	var err error
	for attempt := range 5 {
		if err = c.IndexProduct(catDir, p); err == nil || !(strings.Contains(err.Error(), ": 503 ") || strings.Contains(err.Error(), ": 429 ")) {
			return err
		}
		time.Sleep(time.Duration(attempt+1) * 500 * time.Millisecond)
	}
	return err
}
