package searchv1test

import (
	"context"
	"math"
	"net/http"
	"slices"
	"testing"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
)

// Conformance is the behaviour every searchv1 server shares, run through the
// contract's client: the real search service passes it over each store, and
// so does this package's Server. start returns the base URL of a new, empty
// server.
func Conformance(t *testing.T, start func(t *testing.T) string) {
	for _, tc := range []struct {
		name string
		run  func(*testing.T, *searchv1.Client)
	}{
		{"FilterTable", testFilterTable},
		{"Refusals", testRefusals},
		{"WritesAndAliases", testWritesAndAliases},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, &searchv1.Client{BaseURL: start(t)}) })
	}
}

func hitSKUs(hits []searchv1.Hit) []string {
	out := []string{}
	for _, h := range hits {
		out = append(out, h.SKU)
	}
	return out
}

func testFilterTable(t *testing.T, c *searchv1.Client) {
	ctx := context.Background()
	if _, err := c.CreateCollection(ctx, searchv1.CreateCollectionRequest{Catalog: "shop", Model: "m1", Dim: FilterDim}); err != nil {
		t.Fatal(err)
	}
	items, cases := FilterTable()
	var pts []searchv1.Point
	for i, it := range items {
		pts = append(pts, searchv1.Point{SKU: it.SKU, Vector: it.Vector(i), Payload: it.Payload})
	}
	if _, err := c.Upsert(ctx, "shop", searchv1.UpsertRequest{Model: "m1", Points: pts}); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Count(ctx, "shop", "m1"); err != nil || n.Count != int64(len(items)) {
		t.Fatalf("count %+v %v", n, err)
	}
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			f := tc.Filter
			res, err := c.Search(ctx, "shop", searchv1.SearchRequest{Model: "m1", Vector: FilterQuery(), TopK: 10, Filter: &f})
			if err != nil {
				t.Fatal(err)
			}
			if got := hitSKUs(res.Results); !slices.Equal(got, tc.Want) {
				t.Fatalf("got %v, want %v", got, tc.Want)
			}
			for _, h := range res.Results {
				if h.Payload[searchv1.KeySKU] != h.SKU {
					t.Fatalf("hit payload lacks its sku: %+v", h)
				}
			}
		})
	}
	// Scores are cosines, whatever the query's length.
	res, err := c.Search(ctx, "shop", searchv1.SearchRequest{Model: "m1", Vector: []float32{7, 0, 0, 0, 0, 0, 0, 0}, TopK: 2, Offset: 1})
	if err != nil || len(res.Results) != 2 || res.Results[0].SKU != "s2" || math.Abs(float64(res.Results[0].Score)-0.95) > 1e-4 {
		t.Fatalf("scaled, offset query: %+v %v", res, err)
	}
	rec, err := c.Recommend(ctx, "shop", searchv1.RecommendRequest{SKU: "s1", Model: "m1", TopK: 10, Offset: 1, Filter: &searchv1.Filter{Brand: []string{"acme"}}})
	if err != nil || !slices.Equal(hitSKUs(rec.Results), []string{"s6"}) {
		t.Fatalf("filtered recommend with offset: %v %v", hitSKUs(rec.Results), err)
	}
}

func testRefusals(t *testing.T, c *searchv1.Client) {
	ctx := context.Background()
	if _, err := c.CreateCollection(ctx, searchv1.CreateCollectionRequest{Catalog: "shop", Model: "m1", Dim: 4, MakeAlias: true}); err != nil {
		t.Fatal(err)
	}
	v := []float32{1, 0, 0, 0}
	tests := []struct {
		name   string
		call   func() error
		status int
		code   string
	}{
		{"dim conflict", func() error {
			_, err := c.CreateCollection(ctx, searchv1.CreateCollectionRequest{Catalog: "shop", Model: "m1", Dim: 5})
			return err
		}, http.StatusConflict, apierror.CodeDimensionMismatch},
		{"bad catalog name", func() error {
			_, err := c.CreateCollection(ctx, searchv1.CreateCollectionRequest{Catalog: "Shop", Model: "m1", Dim: 4})
			return err
		}, http.StatusBadRequest, searchv1.CodeInvalidName},
		{"zero vector", func() error {
			_, err := c.Upsert(ctx, "shop", searchv1.UpsertRequest{Model: "m1", Points: []searchv1.Point{{SKU: "a", Vector: make([]float32, 4)}}})
			return err
		}, http.StatusBadRequest, searchv1.CodeInvalidVector},
		{"wrong length", func() error {
			_, err := c.Upsert(ctx, "shop", searchv1.UpsertRequest{Model: "m1", Points: []searchv1.Point{{SKU: "a", Vector: []float32{1}}}})
			return err
		}, http.StatusBadRequest, apierror.CodeDimensionMismatch},
		{"price not a number", func() error {
			_, err := c.Upsert(ctx, "shop", searchv1.UpsertRequest{Model: "m1", Points: []searchv1.Point{{SKU: "a", Vector: v, Payload: searchv1.Payload{"price": "cheap"}}}})
			return err
		}, http.StatusBadRequest, searchv1.CodeInvalidPayload},
		{"other space", func() error {
			_, err := c.Search(ctx, "shop", searchv1.SearchRequest{Model: "m2", Vector: v})
			return err
		}, http.StatusBadRequest, apierror.CodeModelMismatch},
		{"no model", func() error {
			_, err := c.Search(ctx, "shop", searchv1.SearchRequest{Vector: v})
			return err
		}, http.StatusBadRequest, apierror.CodeInvalidArgument},
		{"top_k too large", func() error {
			_, err := c.Search(ctx, "shop", searchv1.SearchRequest{Model: "m1", Vector: v, TopK: searchv1.MaxTopK + 1})
			return err
		}, http.StatusBadRequest, apierror.CodeInvalidArgument},
		{"price range inverted", func() error {
			lo, hi := 10.0, 1.0
			_, err := c.Search(ctx, "shop", searchv1.SearchRequest{Model: "m1", Vector: v, Filter: &searchv1.Filter{PriceMin: &lo, PriceMax: &hi}})
			return err
		}, http.StatusBadRequest, searchv1.CodeInvalidFilter},
		{"unknown catalog", func() error {
			_, err := c.Search(ctx, "other", searchv1.SearchRequest{Model: "m1", Vector: v})
			return err
		}, http.StatusNotFound, apierror.CodeNotFound},
		{"recommend unknown sku", func() error {
			_, err := c.Recommend(ctx, "shop", searchv1.RecommendRequest{SKU: "nope"})
			return err
		}, http.StatusNotFound, apierror.CodeNotFound},
		{"drop aliased collection", func() error {
			return c.DropCollection(ctx, "shop__m1")
		}, http.StatusConflict, apierror.CodeConflict},
		{"alias to nothing", func() error {
			_, err := c.SwitchAlias(ctx, "shop", "shop__m9")
			return err
		}, http.StatusNotFound, apierror.CodeNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			e, ok := apierror.As(err)
			if !ok || e.Status != tc.status || e.Code != tc.code {
				t.Fatalf("got %v, want %d %s", err, tc.status, tc.code)
			}
		})
	}
}

func testWritesAndAliases(t *testing.T, c *searchv1.Client) {
	ctx := context.Background()
	for _, m := range []string{"m1", "m2"} {
		if _, err := c.CreateCollection(ctx, searchv1.CreateCollectionRequest{Catalog: "shop", Model: m, Dim: 2, MakeAlias: true}); err != nil {
			t.Fatal(err)
		}
	}
	if a, err := c.Alias(ctx, "shop"); err != nil || a.Collection != "shop__m1" || a.Model != "m1" {
		t.Fatalf("alias made by the first create only: %+v %v", a, err)
	}
	up := searchv1.UpsertRequest{Model: "m1", Points: []searchv1.Point{{SKU: "a", Vector: []float32{1, 0}, Payload: searchv1.Payload{"title": "A"}}}}
	for range 2 {
		if _, err := c.Upsert(ctx, "shop", up); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := c.Count(ctx, "shop", "m1"); err != nil || n.Count != 1 {
		t.Fatalf("a rewritten sku counts once: %+v %v", n, err)
	}
	p, err := c.Get(ctx, "shop", "a", "")
	if err != nil || p.Payload["title"] != "A" || p.Payload[searchv1.KeySKU] != "a" {
		t.Fatalf("get through the alias: %+v %v", p, err)
	}
	if _, err := c.SwitchAlias(ctx, "shop", "shop__m2"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "shop", "a", ""); apierror.CodeOf(err) != apierror.CodeNotFound {
		t.Fatalf("after the switch, the alias reads m2: %v", err)
	}
	if err := c.Delete(ctx, "shop", "a", "m1"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if n, err := c.Count(ctx, "shop", "m1"); err != nil || n.Count != 0 {
		t.Fatalf("count after delete: %+v %v", n, err)
	}
	if err := c.Delete(ctx, "shop", "a", "m1"); err != nil {
		t.Fatalf("deleting an absent sku is not an error: %v", err)
	}
	if err := c.DropCollection(ctx, "shop__m1"); err != nil {
		t.Fatalf("drop: %v", err)
	}
}
