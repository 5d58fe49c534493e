// Package storetest is the backend-agnostic conformance suite every
// store.Store must pass: the embedded backend, the in-process Qdrant fake
// and (when QDRANT_ADDR is set) a real Qdrant.
package storetest

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/lookalike-dev/lookalike/search/internal/store"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1/searchv1test"
)

// Factory returns the store under test. Each call may return the same
// store; the suite uses fresh catalog names per test and drops what it made.
type Factory func(t *testing.T) store.Store

// Run runs every conformance test.
func Run(t *testing.T, newStore Factory) {
	tests := []struct {
		name string
		fn   func(*testing.T, store.Store, string)
	}{
		{"CreateCollection", testCreateCollection},
		{"UpsertGetCountDelete", testUpsertGetCountDelete},
		{"SearchRanking", testSearchRanking},
		{"Filters", testFilters},
		{"Recommend", testRecommend},
		{"Aliases", testAliases},
		{"DimensionMismatch", testDimensionMismatch},
		{"OddSKUs", testOddSKUs},
		{"LargeReply", testLargeReply},
		{"ConcurrentWritesAndReads", testConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			catalog := fmt.Sprintf("ct%d-%08x", time.Now().UnixNano()%1e6, rand.Uint32())
			t.Cleanup(func() { cleanup(s, catalog) })
			tc.fn(t, s, catalog)
		})
	}
}

func cleanup(s store.Store, catalog string) {
	ctx := context.Background()
	aliases, _ := s.Aliases(ctx)
	for a, c := range aliases {
		if cat, _, _ := store.SplitCollection(c); cat == catalog || a == catalog {
			_ = s.DeleteAlias(ctx, a)
		}
	}
	cs, _ := s.Collections(ctx)
	for _, c := range cs {
		if c.Catalog == catalog {
			_ = s.DropCollection(ctx, c.Name)
		}
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func mustCreate(t *testing.T, s store.Store, catalog, model string, dim int) string {
	t.Helper()
	c, err := s.CreateCollection(ctx(t), catalog, model, dim)
	if err != nil {
		t.Fatalf("create %s/%s: %v", catalog, model, err)
	}
	return c.Name
}

func wantKind(t *testing.T, err error, k store.Kind, what string) {
	t.Helper()
	if store.KindOf(err) != k {
		t.Fatalf("%s: got error %v (kind %d), want kind %d", what, err, store.KindOf(err), k)
	}
}

// angled is a unit vector at cosine cos to axis 0, leaning toward axis.
func angled(dim int, cos float64, axis int) []float32 {
	v := make([]float32, dim)
	v[0] = float32(cos)
	v[axis] = float32(math.Sqrt(1 - cos*cos))
	return v
}

func axis0(dim int) []float32 { v := make([]float32, dim); v[0] = 1; return v }

func skus(hits []store.Hit) []string {
	out := make([]string, len(hits))
	for i, h := range hits {
		out[i] = h.SKU
	}
	return out
}

func testCreateCollection(t *testing.T, s store.Store, catalog string) {
	name := mustCreate(t, s, catalog, "m1", 8)
	if name != searchv1.CollectionName(catalog, "m1") {
		t.Fatalf("name %q", name)
	}
	again, err := s.CreateCollection(ctx(t), catalog, "m1", 8)
	if err != nil || again.Name != name || again.Dim != 8 {
		t.Fatalf("idempotent create: %+v %v", again, err)
	}
	_, err = s.CreateCollection(ctx(t), catalog, "m1", 9)
	wantKind(t, err, store.KindConflict, "create with other dim")
	info, err := s.Collection(ctx(t), name)
	if err != nil || info.Catalog != catalog || info.Model != "m1" || info.Dim != 8 || info.Count != 0 {
		t.Fatalf("info %+v %v", info, err)
	}
	list, err := s.Collections(ctx(t))
	if err != nil || !slices.ContainsFunc(list, func(c store.Collection) bool { return c.Name == name }) {
		t.Fatalf("list %+v %v", list, err)
	}
	_, err = s.Collection(ctx(t), catalog+"__absent")
	wantKind(t, err, store.KindNotFound, "absent collection")
	_, err = s.Count(ctx(t), catalog+"__absent")
	wantKind(t, err, store.KindNotFound, "count absent collection")
	if err := s.DropCollection(ctx(t), name); err != nil {
		t.Fatalf("drop: %v", err)
	}
	wantKind(t, s.DropCollection(ctx(t), name), store.KindNotFound, "drop twice")
}

func testUpsertGetCountDelete(t *testing.T, s store.Store, catalog string) {
	name := mustCreate(t, s, catalog, "m1", 4)
	pts := []store.Point{
		{SKU: "a", Vector: []float32{2, 0, 0, 0}, Payload: map[string]any{"title": "A", "price": 10.5, "category": "shoes"}},
		{SKU: "b", Vector: []float32{0, 3, 0, 0}, Payload: map[string]any{"title": "B"}},
		{SKU: "c", Vector: []float32{0, 0, 1, 1}},
	}
	if err := s.Upsert(ctx(t), name, pts); err != nil {
		t.Fatalf("upsert: %v", err)
	}
	if n, err := s.Count(ctx(t), name); err != nil || n != 3 {
		t.Fatalf("count %d %v", n, err)
	}
	p, err := s.Get(ctx(t), name, "a")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if p.SKU != "a" || p.Payload["title"] != "A" || p.Payload["price"] != 10.5 || p.Payload[store.KeySKU] != "a" {
		t.Fatalf("get payload %+v", p)
	}
	if len(p.Vector) != 4 || math.Abs(float64(p.Vector[0])-1) > 1e-6 {
		t.Fatalf("stored vector must be normalised: %v", p.Vector)
	}
	// Upsert is idempotent by SKU and replaces vector and payload.
	if err := s.Upsert(ctx(t), name, []store.Point{{SKU: "a", Vector: []float32{0, 0, 0, 5}, Payload: map[string]any{"title": "A2"}}}); err != nil {
		t.Fatalf("re-upsert: %v", err)
	}
	if n, _ := s.Count(ctx(t), name); n != 3 {
		t.Fatalf("count after re-upsert %d", n)
	}
	p, _ = s.Get(ctx(t), name, "a")
	if p.Payload["title"] != "A2" || p.Payload["price"] != nil || math.Abs(float64(p.Vector[3])-1) > 1e-6 {
		t.Fatalf("re-upsert not applied: %+v", p)
	}
	hits, err := s.Search(ctx(t), name, store.Query{Vector: []float32{0, 0, 0, 1}, TopK: 1})
	if err != nil || len(hits) != 1 || hits[0].SKU != "a" {
		t.Fatalf("search after update: %v %v", skus(hits), err)
	}
	if err := s.Delete(ctx(t), name, "a"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	_, err = s.Get(ctx(t), name, "a")
	wantKind(t, err, store.KindNotFound, "get deleted")
	if err := s.Delete(ctx(t), name, "a"); err != nil {
		t.Fatalf("delete absent must succeed: %v", err)
	}
	if n, _ := s.Count(ctx(t), name); n != 2 {
		t.Fatalf("count after delete %d", n)
	}
	hits, _ = s.Search(ctx(t), name, store.Query{Vector: []float32{0, 0, 0, 1}, TopK: 10})
	if slices.Contains(skus(hits), "a") {
		t.Fatalf("deleted sku returned: %v", skus(hits))
	}
	// Revive after delete.
	if err := s.Upsert(ctx(t), name, []store.Point{{SKU: "a", Vector: []float32{1, 0, 0, 0}}}); err != nil {
		t.Fatalf("revive: %v", err)
	}
	if n, _ := s.Count(ctx(t), name); n != 3 {
		t.Fatalf("count after revive %d", n)
	}
	_, err = s.Get(ctx(t), catalog+"__absent", "a")
	wantKind(t, err, store.KindNotFound, "get in absent collection")
	wantKind(t, s.Upsert(ctx(t), catalog+"__absent", pts), store.KindNotFound, "upsert into absent collection")
}

func rankingFixture(t *testing.T, s store.Store, catalog string) (string, map[string]float64) {
	const dim = 8
	name := mustCreate(t, s, catalog, "m1", dim)
	cos := map[string]float64{"p1": 0.99, "p2": 0.95, "p3": 0.9, "p4": 0.8, "p5": 0.6, "p6": 0.3, "p7": -0.2}
	var pts []store.Point
	i := 0
	for _, sku := range sortedKeys(cos) {
		pts = append(pts, store.Point{SKU: sku, Vector: angled(dim, cos[sku], 1+i%(dim-1))})
		i++
	}
	if err := s.Upsert(ctx(t), name, pts); err != nil {
		t.Fatalf("upsert: %v", err)
	}
	return name, cos
}

func sortedKeys(m map[string]float64) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}

func f32(v float32) *float32 { return &v }

func testSearchRanking(t *testing.T, s store.Store, catalog string) {
	name, cos := rankingFixture(t, s, catalog)
	q := axis0(8)
	tests := []struct {
		name  string
		query store.Query
		want  []string
	}{
		{"top3", store.Query{TopK: 3}, []string{"p1", "p2", "p3"}},
		{"all", store.Query{TopK: 100}, []string{"p1", "p2", "p3", "p4", "p5", "p6", "p7"}},
		{"offset", store.Query{TopK: 2, Offset: 2}, []string{"p3", "p4"}},
		{"offset past end", store.Query{TopK: 5, Offset: 10}, []string{}},
		{"min score", store.Query{TopK: 10, MinScore: f32(0.85)}, []string{"p1", "p2", "p3"}},
		{"min score and offset", store.Query{TopK: 10, Offset: 1, MinScore: f32(0.85)}, []string{"p2", "p3"}},
		{"exclude", store.Query{TopK: 2, ExcludeSKU: "p1"}, []string{"p2", "p3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.query.Vector = q
			hits, err := s.Search(ctx(t), name, tc.query)
			if err != nil {
				t.Fatalf("search: %v", err)
			}
			if got := skus(hits); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for _, h := range hits {
				if math.Abs(float64(h.Score)-cos[h.SKU]) > 1e-4 {
					t.Fatalf("%s score %v, want cosine %v", h.SKU, h.Score, cos[h.SKU])
				}
				if h.Payload[store.KeySKU] != h.SKU {
					t.Fatalf("hit payload lacks sku: %+v", h)
				}
				if h.Vector != nil {
					t.Fatalf("vector returned without WithVectors")
				}
			}
		})
	}
	// A query vector of any length is normalised: scale does not change scores.
	hits, err := s.Search(ctx(t), name, store.Query{Vector: []float32{7, 0, 0, 0, 0, 0, 0, 0}, TopK: 1, WithVectors: true})
	if err != nil || len(hits) != 1 || math.Abs(float64(hits[0].Score)-0.99) > 1e-4 || len(hits[0].Vector) != 8 {
		t.Fatalf("scaled query: %+v %v", hits, err)
	}
}

func testFilters(t *testing.T, s store.Store, catalog string) {
	name := mustCreate(t, s, catalog, "m1", searchv1test.FilterDim)
	items, cases := searchv1test.FilterTable()
	var pts []store.Point
	for i, it := range items {
		pts = append(pts, store.Point{SKU: it.SKU, Vector: it.Vector(i), Payload: it.Payload})
	}
	if err := s.Upsert(ctx(t), name, pts); err != nil {
		t.Fatalf("upsert: %v", err)
	}
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			f := tc.Filter
			hits, err := s.Search(ctx(t), name, store.Query{Vector: searchv1test.FilterQuery(), TopK: 10, Filter: &f})
			if err != nil {
				t.Fatalf("search: %v", err)
			}
			if got := skus(hits); !slices.Equal(got, tc.Want) {
				t.Fatalf("got %v, want %v", got, tc.Want)
			}
		})
	}
	// Filter with offset and recommend.
	hits, err := s.Recommend(ctx(t), name, "s1", store.Query{TopK: 10, Offset: 1, Filter: &searchv1.Filter{Brand: []string{"acme"}}})
	if err != nil || !slices.Equal(skus(hits), []string{"s6"}) {
		t.Fatalf("filtered recommend with offset: %v %v", skus(hits), err)
	}
}

func testRecommend(t *testing.T, s store.Store, catalog string) {
	name, _ := rankingFixture(t, s, catalog)
	hits, err := s.Recommend(ctx(t), name, "p1", store.Query{TopK: 3})
	if err != nil {
		t.Fatalf("recommend: %v", err)
	}
	if len(hits) != 3 || slices.Contains(skus(hits), "p1") {
		t.Fatalf("recommend must leave the sku out: %v", skus(hits))
	}
	for i := 1; i < len(hits); i++ {
		if hits[i].Score > hits[i-1].Score {
			t.Fatalf("not sorted: %+v", hits)
		}
	}
	_, err = s.Recommend(ctx(t), name, "absent", store.Query{TopK: 3})
	wantKind(t, err, store.KindNotFound, "recommend absent sku")
	hits, err = s.Recommend(ctx(t), name, "p1", store.Query{TopK: 10, MinScore: f32(0.999)})
	if err != nil || len(hits) != 0 {
		t.Fatalf("recommend with high min score: %v %v", skus(hits), err)
	}
}

func testAliases(t *testing.T, s store.Store, catalog string) {
	a := mustCreate(t, s, catalog, "m1", 4)
	b := mustCreate(t, s, catalog, "m2", 6)
	_, err := s.Alias(ctx(t), catalog)
	wantKind(t, err, store.KindNotFound, "absent alias")
	wantKind(t, s.SwitchAlias(ctx(t), catalog, catalog+"__absent"), store.KindNotFound, "alias to absent collection")
	wantKind(t, s.DeleteAlias(ctx(t), catalog), store.KindNotFound, "delete absent alias")
	steps := []struct{ target string }{{a}, {b}, {a}, {a}}
	for i, st := range steps {
		if err := s.SwitchAlias(ctx(t), catalog, st.target); err != nil {
			t.Fatalf("switch %d: %v", i, err)
		}
		got, err := s.Alias(ctx(t), catalog)
		if err != nil || got != st.target {
			t.Fatalf("step %d: alias -> %q %v, want %q", i, got, err, st.target)
		}
		all, err := s.Aliases(ctx(t))
		if err != nil || all[catalog] != st.target {
			t.Fatalf("step %d: aliases %v %v", i, all, err)
		}
	}
	wantKind(t, s.DropCollection(ctx(t), a), store.KindConflict, "drop aliased collection")
	if err := s.DropCollection(ctx(t), b); err != nil {
		t.Fatalf("drop unaliased: %v", err)
	}
	if err := s.DeleteAlias(ctx(t), catalog); err != nil {
		t.Fatalf("delete alias: %v", err)
	}
	_, err = s.Alias(ctx(t), catalog)
	wantKind(t, err, store.KindNotFound, "deleted alias")
	// Readers racing a switch always see one of the two targets.
	c := mustCreate(t, s, catalog, "m3", 4)
	if err := s.SwitchAlias(ctx(t), catalog, a); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var bad error
	var mu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			got, err := s.Alias(context.Background(), catalog)
			if err != nil || (got != a && got != c) {
				mu.Lock()
				bad = fmt.Errorf("alias read %q %v during switches", got, err)
				mu.Unlock()
				return
			}
		}
	}()
	for i := range 10 {
		target := a
		if i%2 == 0 {
			target = c
		}
		if err := s.SwitchAlias(ctx(t), catalog, target); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if bad != nil {
		t.Fatal(bad)
	}
}

func testDimensionMismatch(t *testing.T, s store.Store, catalog string) {
	name := mustCreate(t, s, catalog, "m1", 4)
	tests := []struct {
		name string
		do   func() error
	}{
		{"upsert short", func() error {
			return s.Upsert(ctx(t), name, []store.Point{{SKU: "x", Vector: []float32{1, 0, 0}}})
		}},
		{"upsert long", func() error {
			return s.Upsert(ctx(t), name, []store.Point{{SKU: "x", Vector: []float32{1, 0, 0, 0, 0}}})
		}},
		{"search", func() error {
			_, err := s.Search(ctx(t), name, store.Query{Vector: []float32{1, 0}, TopK: 1})
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantKind(t, tc.do(), store.KindInvalid, tc.name)
		})
	}
	if n, _ := s.Count(ctx(t), name); n != 0 {
		t.Fatalf("a refused upsert wrote %d points", n)
	}
}

func testOddSKUs(t *testing.T, s store.Store, catalog string) {
	name := mustCreate(t, s, catalog, "m1", 4)
	long := make([]byte, 300)
	for i := range long {
		long[i] = 'x'
	}
	odd := []string{"a/b c", "ünïcödé-✓", "12345", "00000000-0000-0000-0000-000000000000", string(long), "sku?x=1&y=2#z"}
	for i, sku := range odd {
		v := []float32{0, 0, 0, 0}
		v[i%4] = 1
		v[(i+1)%4] = float32(i) / 10
		if err := s.Upsert(ctx(t), name, []store.Point{{SKU: sku, Vector: v}}); err != nil {
			t.Fatalf("upsert %q: %v", sku, err)
		}
	}
	for _, sku := range odd {
		p, err := s.Get(ctx(t), name, sku)
		if err != nil || p.SKU != sku {
			t.Fatalf("get %q: %+v %v", sku, p.SKU, err)
		}
	}
	if n, _ := s.Count(ctx(t), name); n != int64(len(odd)) {
		t.Fatalf("count %d, want %d (ids must not collide)", n, len(odd))
	}
}

func testLargeReply(t *testing.T, s store.Store, catalog string) {
	const dim, n = 1280, 1000
	name := mustCreate(t, s, catalog, "m1", dim)
	r := rand.New(rand.NewPCG(9, 9))
	for start := 0; start < n; start += 250 {
		var pts []store.Point
		for i := start; i < start+250; i++ {
			v := make([]float32, dim)
			for j := range v {
				v[j] = r.Float32()
			}
			pts = append(pts, store.Point{SKU: fmt.Sprintf("big-%04d", i), Vector: v, Payload: map[string]any{"title": "a product with a title"}})
		}
		if err := s.Upsert(ctx(t), name, pts); err != nil {
			t.Fatalf("upsert: %v", err)
		}
	}
	q := make([]float32, dim)
	for j := range q {
		q[j] = r.Float32()
	}
	// 1000 hits with 1280-d vectors is over 5 MB: past gRPC's 4 MiB default.
	hits, err := s.Search(ctx(t), name, store.Query{Vector: q, TopK: searchv1.MaxTopK, WithVectors: true})
	if err != nil {
		t.Fatalf("large search: %v", err)
	}
	if len(hits) != n || len(hits[n-1].Vector) != dim {
		t.Fatalf("got %d hits", len(hits))
	}
	seen := map[string]bool{}
	for i, h := range hits {
		if seen[h.SKU] || (i > 0 && h.Score > hits[i-1].Score+1e-6) {
			t.Fatalf("hit %d %s duplicated or out of order", i, h.SKU)
		}
		seen[h.SKU] = true
	}
}

func testConcurrent(t *testing.T, s store.Store, catalog string) {
	const dim = 16
	name := mustCreate(t, s, catalog, "m1", dim)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range 10 {
				v := make([]float32, dim)
				v[(w+i)%dim] = 1
				v[(w*3+i+1)%dim] += 0.5
				if err := s.Upsert(context.Background(), name, []store.Point{{SKU: fmt.Sprintf("w%d-%d", w, i), Vector: v}}); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range 10 {
				q := make([]float32, dim)
				q[w] = 1
				if _, err := s.Search(context.Background(), name, store.Query{Vector: q, TopK: 5}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n, err := s.Count(ctx(t), name); err != nil || n != 40 {
		t.Fatalf("count %d %v", n, err)
	}
}
