package embedded

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/lookalike-dev/lookalike/search/internal/hnsw"
	"github.com/lookalike-dev/lookalike/search/internal/store"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
)

// TestGraphRecall measures, never assumes: recall@10 of the store's graph
// path (with and without a filter) against the same store's exact scan.
func TestGraphRecall(t *testing.T) {
	if !hnsw.Available {
		t.Log("hnswlib not compiled in: the store scans exactly, recall is 1 by construction")
	}
	const n, dim, nq, k = 4000, 48, 100, 10
	ctx := context.Background()
	r := rand.New(rand.NewPCG(7, 7))
	centres := make([][]float32, 40)
	for i := range centres {
		centres[i] = make([]float32, dim)
		for j := range centres[i] {
			centres[i][j] = r.Float32()
		}
	}
	point := func() []float32 {
		c := centres[r.IntN(len(centres))]
		v := make([]float32, dim)
		for j := range v {
			v[j] = max(c[j]+float32(0.2*r.NormFloat64()), 0)
		}
		return v
	}
	graph := openTemp(t, Options{ExactThreshold: 1})
	exact := openTemp(t, Options{ExactThreshold: 1 << 30})
	// A control: a deliberately weak graph must measure worse, or the
	// measurement proves nothing.
	weak := openTemp(t, Options{ExactThreshold: 1, HNSW: hnsw.Params{M: 2, EfConstruction: 4, Ef: 1}})
	for _, s := range []*Store{graph, exact, weak} {
		if _, err := s.CreateCollection(ctx, "recall", "m", dim); err != nil {
			t.Fatal(err)
		}
	}
	cats := []string{"a", "b", "c", "d"}
	rr := rand.New(rand.NewPCG(1, 1))
	for b := 0; b < n; b += 500 {
		var pts []store.Point
		for i := b; i < b+500; i++ {
			pts = append(pts, store.Point{SKU: fmt.Sprint(i), Vector: point(), Payload: map[string]any{store.KeyCategory: cats[rr.IntN(len(cats))]}})
		}
		for _, s := range []*Store{graph, exact, weak} {
			if err := s.Upsert(ctx, "recall__m", pts); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name     string
		index    *Store
		filter   *searchv1.Filter
		min, max float64
	}{
		{"unfiltered", graph, nil, 0.97, 1},
		{"filtered to a quarter", graph, &searchv1.Filter{Category: []string{"b"}}, 0.97, 1},
		{"control: weak graph", weak, nil, 0, 0.97},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hit := 0
			for range nq {
				q := store.Query{Vector: point(), TopK: k, Filter: tc.filter}
				want, err := exact.Search(ctx, "recall__m", q)
				if err != nil {
					t.Fatal(err)
				}
				got, err := tc.index.Search(ctx, "recall__m", q)
				if err != nil {
					t.Fatal(err)
				}
				in := map[string]bool{}
				for _, h := range want {
					in[h.SKU] = true
				}
				for _, h := range got {
					if in[h.SKU] {
						hit++
					}
					if tc.filter != nil && h.Payload[store.KeyCategory] != "b" {
						t.Fatalf("filter leaked %v", h.Payload)
					}
				}
			}
			recall := float64(hit) / float64(nq*k)
			t.Logf("recall@%d %s: %.4f (graph vs exact scan, n=%d dim=%d)", k, tc.name, recall, n, dim)
			if !hnsw.Available {
				tc.max = 1 // both scan exactly
			}
			if recall < tc.min || recall > tc.max {
				t.Fatalf("recall %.4f outside [%.2f, %.2f]", recall, tc.min, tc.max)
			}
		})
	}
}
