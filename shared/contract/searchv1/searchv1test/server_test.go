package searchv1test_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1/searchv1test"
)

func TestConformance(t *testing.T) {
	searchv1test.Conformance(t, func(t *testing.T) string {
		s := searchv1test.New().Serve()
		t.Cleanup(s.Close)
		return s.URL()
	})
}

// TestAccessors checks what tests read of the double directly.
func TestAccessors(t *testing.T) {
	ctx := context.Background()
	s := searchv1test.New().Serve()
	t.Cleanup(s.Close)
	c := &searchv1.Client{BaseURL: s.URL()}
	if _, err := c.CreateCollection(ctx, searchv1.CreateCollectionRequest{Catalog: "shop", Model: "m1", Dim: 2, MakeAlias: true}); err != nil {
		t.Fatal(err)
	}
	up := searchv1.UpsertRequest{Model: "m1", Points: []searchv1.Point{{SKU: "a", Vector: []float32{1, 0}}}}
	for range 2 {
		if _, err := c.Upsert(ctx, "shop", up); err != nil {
			t.Fatal(err)
		}
	}
	if s.Writes("shop__m1")["a"] != 2 || s.Count("shop__m1") != 1 || s.Upserts() != 2 || s.Queries() != 2 ||
		s.Dim("shop__m1") != 2 || s.Alias("shop") != "shop__m1" || s.Points("shop__m1")["a"].Payload[searchv1.KeySKU] != "a" {
		t.Fatalf("writes %v count %d upserts %d queries %d dim %d alias %q points %v", s.Writes("shop__m1"), s.Count("shop__m1"),
			s.Upserts(), s.Queries(), s.Dim("shop__m1"), s.Alias("shop"), s.Points("shop__m1"))
	}
	s.SetReady(false)
	resp, err := http.Get(s.URL() + "/readyz")
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("not ready: %v %v", resp, err)
	}
	resp.Body.Close()
}
