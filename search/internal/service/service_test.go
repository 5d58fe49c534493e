package service

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/lookalike-dev/lookalike/search/internal/embedded"
	"github.com/lookalike-dev/lookalike/search/internal/store"
	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
)

func newService(t *testing.T) *Service {
	t.Helper()
	st, err := embedded.Open(embedded.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return New(st)
}

func TestResolve(t *testing.T) {
	ctx := context.Background()
	s := newService(t)
	for _, m := range []string{"m1", "m2"} {
		if _, err := s.CreateCollection(ctx, searchv1.CreateCollectionRequest{Catalog: "products", Model: m, Dim: 2, MakeAlias: true}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.SwitchAlias(ctx, "shop", searchv1.SwitchAliasRequest{Collection: "products__m1"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, catalog, model string
		forQuery             bool
		want, code           string
	}{
		{"alias without model", "products", "", true, "products__m1", ""},
		{"catalog and model", "products", "m2", true, "products__m2", ""},
		{"other alias, its catalog's model", "shop", "m2", true, "products__m2", ""},
		{"other alias without model", "shop", "", true, "products__m1", ""},
		{"missing space for a query", "products", "m3", true, "", apierror.CodeModelMismatch},
		{"missing space for a write", "products", "m3", false, "", apierror.CodeNotFound},
		{"unknown catalog", "nope", "m1", true, "", apierror.CodeNotFound},
		{"unknown catalog without model", "nope", "", true, "", apierror.CodeNotFound},
		{"double underscore", "a__b", "m1", true, "", searchv1.CodeInvalidName},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := s.resolve(ctx, tc.catalog, tc.model, tc.forQuery)
			if tc.code != "" {
				if apierror.CodeOf(err) != tc.code {
					t.Fatalf("got %v, want code %s", err, tc.code)
				}
				return
			}
			if err != nil || c.Name != tc.want {
				t.Fatalf("got %q %v, want %q", c.Name, err, tc.want)
			}
		})
	}
}

func TestUpsertSameSKUTwiceLastWins(t *testing.T) {
	ctx := context.Background()
	s := newService(t)
	if _, err := s.CreateCollection(ctx, searchv1.CreateCollectionRequest{Catalog: "products", Model: "m1", Dim: 2, MakeAlias: true}); err != nil {
		t.Fatal(err)
	}
	_, err := s.Upsert(ctx, "products", searchv1.UpsertRequest{Model: "m1", Points: []searchv1.Point{
		{SKU: "a", Vector: searchv1.Vector{1, 0}, Payload: searchv1.Payload{"title": "first"}},
		{SKU: "a", Vector: searchv1.Vector{0, 1}, Payload: searchv1.Payload{"title": "second"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Get(ctx, "products", "a", "")
	if err != nil || p.Payload["title"] != "second" || p.Vector[1] != 1 {
		t.Fatalf("got %+v %v", p, err)
	}
	n, _ := s.Count(ctx, "products", "m1")
	if n.Count != 1 {
		t.Fatalf("count %d", n.Count)
	}
}

// Store errors become envelope errors with a status and a code; a store
// that refuses writes after a disk failure says so with its own code.
func TestAPIErrorMapsStoreKinds(t *testing.T) {
	tests := []struct {
		err        error
		status     int
		code       string
		retryAfter int
	}{
		{store.NotFound("x"), http.StatusNotFound, apierror.CodeNotFound, 0},
		{store.Conflict("x"), http.StatusConflict, apierror.CodeConflict, 0},
		{store.Invalid("x"), http.StatusBadRequest, apierror.CodeInvalidArgument, 0},
		{store.Unavailable(errors.New("down"), "x"), http.StatusServiceUnavailable, apierror.CodeUnavailable, 1},
		{store.StorageFailed(errors.New("EIO"), "x"), http.StatusServiceUnavailable, searchv1.CodeStorageFailed, 0},
		{fmt.Errorf("wrapped: %w", store.StorageFailed(nil, "x")), http.StatusServiceUnavailable, searchv1.CodeStorageFailed, 0},
	}
	for _, tc := range tests {
		t.Run(tc.code, func(t *testing.T) {
			var ae *apierror.Error
			if !errors.As(apiError(tc.err), &ae) {
				t.Fatalf("%v: not an envelope error", tc.err)
			}
			if ae.Status != tc.status || ae.Code != tc.code || ae.RetryAfter != tc.retryAfter {
				t.Fatalf("%v: got %d %s retry %d, want %d %s retry %d", tc.err, ae.Status, ae.Code, ae.RetryAfter, tc.status, tc.code, tc.retryAfter)
			}
		})
	}
}
