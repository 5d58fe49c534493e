package inproc

import (
	"context"
	"testing"

	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
)

func TestIndex(t *testing.T) {
	ctx := context.Background()
	ix, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if _, err := ix.CreateCollection(ctx, searchv1.CreateCollectionRequest{Catalog: "products", Model: "m-v1", Dim: 2, MakeAlias: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Upsert(ctx, "products", searchv1.UpsertRequest{Model: "m-v1", Dim: 2, Points: []searchv1.Point{
		{SKU: "A", Vector: searchv1.Vector{1, 0}}, {SKU: "B", Vector: searchv1.Vector{0, 1}}}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		req     searchv1.SearchRequest
		want    string
		wantErr bool
	}{
		{"nearest", searchv1.SearchRequest{Model: "m-v1", Dim: 2, Vector: searchv1.Vector{0.1, 0.9}, TopK: 1}, "B", false},
		{"model mismatch", searchv1.SearchRequest{Model: "other-v1", Dim: 2, Vector: searchv1.Vector{1, 0}, TopK: 1}, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ix.Search(ctx, "products", tc.req)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v", err)
			}
			if err == nil && (len(r.Results) != 1 || r.Results[0].SKU != tc.want) {
				t.Fatalf("got %+v", r.Results)
			}
		})
	}
}
