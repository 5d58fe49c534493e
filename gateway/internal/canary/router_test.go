package canary

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lookalike-dev/lookalike/gateway/internal/pipeline"
	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
)

func catalogSKUs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("sku-%02d", i)
	}
	return out
}

type rig struct {
	w      *world
	r      *Router
	stable *fakeBackend
	canary *fakeBackend // nil: one embed serves both models
}

func newRig(t *testing.T, separate bool, cfg Config) *rig {
	t.Helper()
	w := newWorld()
	w.seed(modelA, 1280, catalogSKUs(30)...)
	g := &rig{w: w}
	if separate {
		g.stable = &fakeBackend{w: w, models: []embedv1.ModelSpec{spec(modelA, 1280, true)}}
		g.canary = &fakeBackend{w: w, models: []embedv1.ModelSpec{spec(modelB, 1000, true)}}
	} else {
		g.stable = &fakeBackend{w: w, models: []embedv1.ModelSpec{spec(modelA, 1280, true), spec(modelB, 1000, false)}}
	}
	backends := []Backend{g.stable}
	if g.canary != nil {
		backends = append(backends, g.canary)
	}
	if cfg.Share == 0 {
		cfg.Share = 0.1
	}
	cfg.StateTTL = 1 // always fresh: the tests change aliases directly
	r, err := New(cfg, backends, fakeSpaces{w}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	g.r = r
	return g
}

func query(client, override string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/v1/search", nil)
	r.Header.Set(HeaderClientID, client)
	if override != "" {
		r.Header.Set(HeaderOverride, override)
	}
	return r
}

// split runs n queries from n clients and returns how many the canary
// answered, checking each answer comes from its arm's space only.
func (g *rig) split(t *testing.T, n int, wantStable, wantCanary string) int {
	t.Helper()
	ctx := context.Background()
	canary := 0
	for i := range n {
		img := []byte(fmt.Sprintf("image-%d", i%7))
		res, d, err := g.r.Search(ctx, query(fmt.Sprintf("client-%d", i), ""), Query{Image: img})
		if err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		want := wantStable
		if d.Arm == Canary {
			canary++
			want = wantCanary
		}
		if res.Model != want || d.Model != want {
			t.Fatalf("query %d: arm %s answered by %q (decided %q), want %q", i, d.Arm, res.Model, d.Model, want)
		}
		expect, _ := (&fakeBackend{w: g.w}).rank(want, string(img), "", 10)
		if OverlapAtK(SKUs(res.Hits), SKUs(expect.Hits), 10) != 1 || res.Hits[0].Score != expect.Hits[0].Score {
			t.Fatalf("query %d: results are not %s's", i, want)
		}
	}
	return canary
}

func TestRolloutLifecycle(t *testing.T) {
	for _, separate := range []bool{false, true} {
		t.Run(fmt.Sprintf("separate canary deployment=%v", separate), func(t *testing.T) {
			g := newRig(t, separate, Config{})
			ctx := context.Background()

			// No canary: everything stable, writes to A only.
			if n := g.split(t, 200, modelA, ""); n != 0 {
				t.Fatalf("%d canary answers without a canary", n)
			}
			if _, err := g.r.IndexProduct(ctx, "before", []byte("x"), nil, ""); err != nil || g.w.has(modelB, "before") {
				t.Fatalf("write before the rollout: %v, in B = %v", err, g.w.has(modelB, "before"))
			}

			// Start: B's space exists, dual writes, no split traffic yet.
			rep, err := g.r.Start(ctx, modelB)
			if err != nil || rep.Phase != PhaseBackfill || g.w.count(modelB) != 0 || len(rep.Ops) != 2 {
				t.Fatalf("start: %+v %v", rep, err)
			}
			if rep, err = g.r.Start(ctx, modelB); err != nil || len(rep.Ops) != 0 {
				t.Fatalf("start again: ops %v, %v", rep.Ops, err)
			}
			w, err := g.r.IndexProductAll(ctx, "during", []byte("y"), nil, "")
			if err != nil || !g.w.has(modelA, "during") || !g.w.has(modelB, "during") || len(w.Also) != 1 || w.Also[0].Model != modelB {
				t.Fatalf("dual write: %+v %v", w, err)
			}
			if n := g.split(t, 200, modelA, ""); n != 0 {
				t.Fatalf("%d canary answers during the backfill", n)
			}
			res, d, err := g.r.Search(ctx, query("x", "canary"), Query{Image: []byte("q")})
			if err != nil || d.Arm != Canary || res.Model != modelB || len(res.Hits) != 1 {
				t.Fatalf("override during backfill: %+v %+v %v", res, d, err)
			}
			if _, err := g.r.Promote(ctx, "", false); apierror.CodeOf(err) != CodeCanaryNotLive {
				t.Fatalf("promote during backfill: %v", err)
			}
			rep, _ = g.r.Report(ctx)
			if rep.BackfillProgress <= 0 || rep.BackfillProgress >= 0.1 {
				t.Fatalf("backfill progress %v", rep.BackfillProgress)
			}

			// The backfill job fills B; then serve.
			g.w.seed(modelB, 1000, append(catalogSKUs(30), "before")...)
			if rep, err = g.r.Serve(ctx); err != nil || rep.Phase != PhaseLive || rep.BackfillProgress != 1 {
				t.Fatalf("serve: %+v %v", rep, err)
			}
			n := g.split(t, 2000, modelA, modelB)
			if n < 160 || n > 240 {
				t.Fatalf("canary answered %d of 2000 at 10%%", n)
			}
			if separate && g.canary.searches.Load() == 0 {
				t.Fatal("the canary deployment answered nothing")
			}

			// Deletes and updates reach both spaces.
			if err := g.r.Delete(ctx, "during", ""); err != nil || g.w.has(modelA, "during") || g.w.has(modelB, "during") {
				t.Fatalf("dual delete: %v", err)
			}

			// Promote: everything goes to B; repeating it changes nothing.
			if rep, err = g.r.Promote(ctx, modelB, false); err != nil || rep.Phase != PhaseNone || rep.Stable != modelB {
				t.Fatalf("promote: %+v %v", rep, err)
			}
			if rep, err = g.r.Promote(ctx, modelB, false); err != nil || len(rep.Ops) != 0 {
				t.Fatalf("promote again: %v %v", rep.Ops, err)
			}
			if n := g.split(t, 300, modelB, ""); n != 0 {
				t.Fatalf("%d canary answers after the promote", n)
			}
			if _, err := g.r.IndexProduct(ctx, "after", []byte("z"), nil, ""); err != nil || !g.w.has(modelB, "after") || g.w.has(modelA, "after") {
				t.Fatalf("write after promote: %v", err)
			}
			if _, _, err := g.r.Search(ctx, query("x", ""), Query{Image: []byte("q"), Query: pipeline.Query{Model: modelA}}); apierror.CodeOf(err) != CodeModelNotLive {
				t.Fatalf("query in the retired space: %v", err)
			}
			if _, _, err := g.r.Search(ctx, query("x", ""), Query{Image: []byte("q"), Query: pipeline.Query{Model: "resnet-v9"}}); apierror.CodeOf(err) != pipeline.CodeUnknownModel {
				t.Fatalf("query for a model nobody serves: %v", err)
			}
		})
	}
}

func TestRollback(t *testing.T) {
	g := newRig(t, false, Config{Share: 0.5})
	ctx := context.Background()
	if _, err := g.r.Start(ctx, modelB); err != nil {
		t.Fatal(err)
	}
	g.w.seed(modelB, 1000, catalogSKUs(30)...)
	if _, err := g.r.Serve(ctx); err != nil {
		t.Fatal(err)
	}
	if n := g.split(t, 200, modelA, modelB); n < 60 || n > 140 {
		t.Fatalf("canary answered %d of 200 at 50%%", n)
	}
	rep, err := g.r.Rollback(ctx, false)
	if err != nil || rep.Phase != PhaseNone || rep.Stable != modelA || g.w.count(modelB) != 30 {
		t.Fatalf("rollback: %+v %v", rep, err)
	}
	if n := g.split(t, 200, modelA, ""); n != 0 {
		t.Fatalf("%d canary answers after the rollback", n)
	}
	if _, _, err := g.r.Search(ctx, query("x", "canary"), Query{Image: []byte("q")}); apierror.CodeOf(err) != CodeNoCanary {
		t.Fatalf("override after rollback: %v", err)
	}
	if _, err := g.r.IndexProduct(ctx, "late", nil, nil, ""); err != nil || g.w.has(modelB, "late") {
		t.Fatalf("write after rollback went to B: %v", err)
	}
	// Start again, roll back with drop; then again (idempotent).
	if _, err := g.r.Start(ctx, modelB); err != nil {
		t.Fatal(err)
	}
	if rep, err = g.r.Rollback(ctx, true); err != nil || g.w.count(modelB) != -1 || len(rep.Ops) != 2 {
		t.Fatalf("rollback with drop: %+v %v (B count %d)", rep.Ops, err, g.w.count(modelB))
	}
	if rep, err = g.r.Rollback(ctx, true); err != nil || len(rep.Ops) != 0 {
		t.Fatalf("rollback again: %+v %v", rep.Ops, err)
	}
}

func TestCanaryWriteFailureFailsTheWrite(t *testing.T) {
	g := newRig(t, true, Config{})
	ctx := context.Background()
	if _, err := g.r.Start(ctx, modelB); err != nil {
		t.Fatal(err)
	}
	g.w.failWrite[modelB] = true
	_, err := g.r.IndexProduct(ctx, "p1", []byte("i"), nil, "")
	if e, ok := apierror.As(err); !ok || e.Status != http.StatusServiceUnavailable || e.RetryAfter == 0 {
		t.Fatalf("err = %v, want 503 with Retry-After", err)
	}
	g.w.failWrite[modelB] = false
	if _, err := g.r.IndexProduct(ctx, "p1", []byte("i"), nil, ""); err != nil || !g.w.has(modelB, "p1") {
		t.Fatalf("retry: %v", err)
	}
	// A metadata update of a product the backfill has not reached yet.
	if _, err := g.r.UpdateMetadata(ctx, "sku-01", map[string]any{"title": "t"}, ""); err != nil {
		t.Fatalf("update of a product not yet in B: %v", err)
	}
	// Starting a model no embedder serves is refused.
	if _, err := g.r.Rollback(ctx, true); err != nil {
		t.Fatal(err)
	}
	if _, err := g.r.Start(ctx, "resnet50-v9"); apierror.CodeOf(err) != CodeModelNotServed {
		t.Fatalf("start of an unserved model: %v", err)
	}
}

func TestShadowComparison(t *testing.T) {
	g := newRig(t, false, Config{ShadowRate: 1, Share: 0.1})
	ctx := context.Background()
	if _, err := g.r.Start(ctx, modelB); err != nil {
		t.Fatal(err)
	}
	g.w.seed(modelB, 1000, catalogSKUs(30)...)
	if _, err := g.r.Serve(ctx); err != nil {
		t.Fatal(err)
	}
	var sum float64
	stableN := 0
	for i := range 300 {
		name := fmt.Sprintf("image-%d", i)
		// The image sits in a pooled buffer that the request releases as
		// soon as it is answered; the next upload would overwrite it. The
		// shadow must hold it until it has read it.
		hold := newScribbleHold([]byte(name))
		_, d, err := g.r.Search(ctx, query(fmt.Sprintf("c%d", i), ""), Query{Image: hold.b, Query: pipeline.Query{ImageHold: hold}})
		hold.Release()
		if err != nil {
			t.Fatal(err)
		}
		if d.Arm == Stable {
			stableN++
			a, _ := g.stable.rank(modelA, name, "", 10)
			b, _ := g.stable.rank(modelB, name, "", 10)
			sum += OverlapAtK(SKUs(a.Hits), SKUs(b.Hits), 10)
		}
		g.r.WaitShadows() // so none is dropped for lack of slots
		if hold.refs.Load() != 0 {
			t.Fatalf("query %d: the image is still held after its shadow ended", i)
		}
	}
	_, sh := g.r.metrics.Report()
	if sh.Runs != int64(stableN) || sh.Errors != 0 || sh.Dropped != 0 {
		t.Fatalf("shadow runs %+v, want %d", sh, stableN)
	}
	want := sum / float64(stableN)
	if d := sh.OverlapMean - want; d > 1e-9 || d < -1e-9 {
		t.Fatalf("overlap@10 mean %v, want %v", sh.OverlapMean, want)
	}
	if want <= 0 || want >= 1 {
		t.Fatalf("the fake spaces should overlap partly, got %v", want)
	}
	models, _ := g.r.metrics.Report()
	for _, m := range models {
		if m.Queries == 0 || m.TopScoreP50 <= 0 || m.LatencyP50 < 0 {
			t.Fatalf("model report %+v", m)
		}
	}
	// Overridden queries are not shadowed.
	before := sh.Runs
	if _, _, err := g.r.Search(ctx, query("c", "stable"), Query{Image: []byte("i")}); err != nil {
		t.Fatal(err)
	}
	g.r.WaitShadows()
	if _, sh = g.r.metrics.Report(); sh.Runs != before {
		t.Fatal("an overridden query was shadowed")
	}
}

func TestAdminAPI(t *testing.T) {
	g := newRig(t, false, Config{Model: modelB})
	e := echo.New()
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		if ae, ok := apierror.As(err); ok {
			apierror.Write(c.Response(), ae)
			return
		}
		e.DefaultHTTPErrorHandler(err, c)
	}
	g.r.Register(e)
	srv := httptest.NewServer(e)
	defer srv.Close()
	// A body that is not a request is a 400.
	resp, err := http.Post(srv.URL+RouteRollback, "application/json", strings.NewReader(`{"drop":"yes"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad body: %d", resp.StatusCode)
	}
}

// countingSpaces counts alias reads and can fail them.
type countingSpaces struct {
	fakeSpaces
	mu    sync.Mutex
	reads int
	fail  bool
}

func (c *countingSpaces) Aliases(ctx context.Context) ([]searchv1.AliasInfo, error) {
	c.mu.Lock()
	c.reads++
	fail := c.fail
	c.mu.Unlock()
	if fail {
		return nil, apierror.New(http.StatusServiceUnavailable, apierror.CodeUnavailable, "search down")
	}
	return c.fakeSpaces.Aliases(ctx)
}

func (c *countingSpaces) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}

func TestStateCaching(t *testing.T) {
	w := newWorld()
	w.seed(modelA, 1280, "a")
	sp := &countingSpaces{fakeSpaces: fakeSpaces{w}, fail: true}
	ttl := 150 * time.Millisecond
	r, err := New(Config{StateTTL: ttl}, []Backend{&fakeBackend{w: w}}, sp, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Search down: "no canary", and the failure is remembered for the TTL.
	if st, err := r.State(ctx, false); err == nil || st.Phase != PhaseNone || st.Stable != "" {
		t.Fatalf("state with search down: %+v %v", st, err)
	}
	r.State(ctx, false)
	if sp.count() != 1 {
		t.Fatalf("%d reads within the TTL after a failure, want 1", sp.count())
	}
	sp.mu.Lock()
	sp.fail = false
	sp.mu.Unlock()
	time.Sleep(ttl)
	if st, err := r.State(ctx, false); err != nil || st.Stable != modelA || sp.count() != 2 {
		t.Fatalf("first good read: %+v %v, %d reads", st, err, sp.count())
	}
	for range 10 {
		r.State(ctx, false)
	}
	if sp.count() != 2 {
		t.Fatalf("%d reads within the TTL, want 2", sp.count())
	}
	// Stale: served at once, refreshed in the background.
	time.Sleep(ttl)
	w.seed(modelB, 1000)
	w.mu.Lock()
	w.aliases["products-canary-backfill"] = collB
	w.mu.Unlock()
	if st, _ := r.State(ctx, false); st.Phase != PhaseNone {
		t.Fatalf("stale state not served: %+v", st)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		r.mu.Lock()
		done := !r.refreshing && r.state.Phase != PhaseNone
		r.mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("background refresh did not happen")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Fresh always reads.
	before := sp.count()
	r.State(ctx, true)
	if sp.count() != before+1 {
		t.Fatal("a fresh read did not read")
	}
}

// TestSeams drives the router the way the gateway's API does: Choose, then
// the Backend query, with the Mount middleware adding the headers.
func TestSeams(t *testing.T) {
	g := newRig(t, true, Config{Share: 0.1})
	ctx := context.Background()
	if _, err := g.r.Start(ctx, modelB); err != nil {
		t.Fatal(err)
	}
	g.w.seed(modelB, 1000, catalogSKUs(30)...)
	if _, err := g.r.Serve(ctx); err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		if ae, ok := apierror.As(err); ok {
			apierror.Write(c.Response(), ae)
			return
		}
		e.DefaultHTTPErrorHandler(err, c)
	}
	g.r.Mount(e, nil, nil)
	e.POST("/v1/search", func(c echo.Context) error {
		q := pipeline.Query{Model: g.r.Choose(c.Request(), c.QueryParam("model"))}
		var res pipeline.Result
		var err error
		if sku := c.QueryParam("sku"); sku != "" {
			res, err = g.r.MoreLikeThis(c.Request().Context(), sku, q)
		} else {
			res, err = g.r.SearchImage(c.Request().Context(), []byte("img"), q)
		}
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, res)
	})
	srv := httptest.NewServer(e)
	defer srv.Close()
	in, out := splitKeys(t)
	tests := []struct {
		name, client, override, query string
		status                        int
		arm, model                    string
	}{
		{"client in the share", in[3:], "", "", 200, "canary", modelB},
		{"client outside the share", out[3:], "", "", 200, "stable", modelA},
		{"more like this follows the split too", in[3:], "", "?sku=sku-01", 200, "canary", modelB},
		{"override", out[3:], "canary", "", 200, "canary", modelB},
		{"bad override", out[3:], "latest", "", 400, "", ""},
		{"model that does not serve", out[3:], "", "?model=resnet-v9", 400, "", ""},
		{"stable model by name", in[3:], "", "?model=" + modelA, 200, "stable", modelA},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/search"+tc.query, nil)
			req.Header.Set(HeaderClientID, tc.client)
			if tc.override != "" {
				req.Header.Set(HeaderOverride, tc.override)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || resp.Header.Get(HeaderArm) != tc.arm || resp.Header.Get(HeaderModel) != tc.model {
				t.Fatalf("%d arm %q model %q (%s), want %d %q %q", resp.StatusCode, resp.Header.Get(HeaderArm), resp.Header.Get(HeaderModel), b, tc.status, tc.arm, tc.model)
			}
		})
	}
	// Without the middleware (a caller that skips Choose) the model decides the arm.
	res, err := g.r.SearchImage(ctx, []byte("x"), pipeline.Query{Model: modelB})
	if err != nil || res.Model != modelB {
		t.Fatalf("direct canary query: %+v %v", res, err)
	}
	models, err := g.r.Models(ctx)
	if err != nil || len(models) != 2 || !models[0].Default || models[1].Default {
		t.Fatalf("models of both deployments: %+v %v", models, err)
	}
}

// scribbleHold is a pooled buffer's hold that overwrites the bytes when the
// last holder lets go, as the next upload reusing the buffer would.
type scribbleHold struct {
	b    []byte
	refs atomic.Int32
}

func newScribbleHold(b []byte) *scribbleHold {
	h := &scribbleHold{b: b}
	h.refs.Store(1)
	return h
}

func (h *scribbleHold) Retain() { h.refs.Add(1) }

func (h *scribbleHold) Release() {
	if h.refs.Add(-1) == 0 {
		for i := range h.b {
			h.b[i] = 'x'
		}
	}
}
