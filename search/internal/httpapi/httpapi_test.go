package httpapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/lookalike-dev/lookalike/search/internal/embedded"
	"github.com/lookalike-dev/lookalike/search/internal/qdrantstore"
	"github.com/lookalike-dev/lookalike/search/internal/qdrantstore/fake"
	"github.com/lookalike-dev/lookalike/search/internal/service"
	"github.com/lookalike-dev/lookalike/search/internal/store"
	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/buildinfo"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
	"github.com/lookalike-dev/lookalike/shared/server"
	"github.com/lookalike-dev/lookalike/shared/telemetry"
)

type backend struct {
	name string
	open func(t *testing.T) store.Store
}

var backends = []backend{
	{"embedded", func(t *testing.T) store.Store {
		s, err := embedded.Open(embedded.Options{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
	{"qdrant-fake", func(t *testing.T) store.Store {
		f, err := fake.Start("")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(f.Stop)
		s, err := qdrantstore.New(qdrantstore.Config{Addr: f.Addr()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
}

// serve runs the API on the shared server plumbing (envelope, body limit).
func serve(t *testing.T, st store.Store) (*searchv1.Client, string) {
	t.Helper()
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{Service: "search-test"})
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Config{BodyLimit: 1 << 20}, slog.New(slog.DiscardHandler), tel, buildinfo.Read("search", "test"))
	New(service.New(st)).Register(srv.Echo)
	hs := httptest.NewServer(srv.Echo)
	t.Cleanup(hs.Close)
	return &searchv1.Client{BaseURL: hs.URL}, hs.URL
}

func wantCode(t *testing.T, err error, status int, code string) {
	t.Helper()
	e, ok := apierror.As(err)
	if !ok || e.Status != status || e.Code != code {
		t.Fatalf("got %v, want %d %s", err, status, code)
	}
}

func vec(vs ...float32) searchv1.Vector { return searchv1.Vector(vs) }

func f32(v float32) *float32 { return &v }
func f64(v float64) *float64 { return &v }
func b(v bool) *bool         { return &v }

func nanBase64() string {
	raw := make([]byte, 16)
	binary.LittleEndian.PutUint32(raw[0:], math.Float32bits(float32(math.NaN())))
	binary.LittleEndian.PutUint32(raw[4:], math.Float32bits(1))
	return base64.StdEncoding.EncodeToString(raw)
}

func TestRoutes(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) { testRoutes(t, be) })
	}
}

func testRoutes(t *testing.T, be backend) {
	ctx := context.Background()
	cl, base := serve(t, be.open(t))
	info, err := cl.CreateCollection(ctx, searchv1.CreateCollectionRequest{Catalog: "products", Model: "m-a", Dim: 4, MakeAlias: true})
	if err != nil || info.Name != "products__m-a" || info.Dim != 4 || info.Backend == "" {
		t.Fatalf("create: %+v %v", info, err)
	}
	if _, err := cl.CreateCollection(ctx, searchv1.CreateCollectionRequest{Catalog: "products", Model: "m-b", Dim: 6, MakeAlias: true}); err != nil {
		t.Fatal(err)
	}
	if a, err := cl.Alias(ctx, "products"); err != nil || a.Collection != "products__m-a" || a.Model != "m-a" {
		t.Fatalf("MakeAlias must not move an existing alias: %+v %v", a, err)
	}
	points := []searchv1.Point{
		{SKU: "red-shoe", Vector: vec(1, 0, 0, 0), Payload: searchv1.Payload{"category": "shoes", "brand": "acme", "price": 50.0, "in_stock": true}},
		{SKU: "blue-shoe", Vector: vec(0.9, 0.1, 0, 0), Payload: searchv1.Payload{"category": "shoes", "brand": "zeta", "price": 70.0, "in_stock": false}},
		{SKU: "bag", Vector: vec(0.5, 0.5, 0, 0), Payload: searchv1.Payload{"category": "bags", "brand": "acme", "price": 90.0, "in_stock": true}},
		{SKU: "a/b c", Vector: vec(0, 0, 1, 0)},
		{SKU: "50%off", Vector: vec(0, 0, 0, 1)},
	}
	up, err := cl.Upsert(ctx, "products", searchv1.UpsertRequest{Model: "m-a", Dim: 4, Points: points})
	if err != nil || up.Upserted != 5 || up.Collection != "products__m-a" {
		t.Fatalf("upsert: %+v %v", up, err)
	}
	if _, err := cl.Upsert(ctx, "products", searchv1.UpsertRequest{Model: "m-b", Dim: 6, Points: []searchv1.Point{{SKU: "red-shoe", Vector: vec(0, 0, 0, 0, 0, 1)}}}); err != nil {
		t.Fatal(err)
	}

	t.Run("search", func(t *testing.T) {
		tests := []struct {
			name string
			req  searchv1.SearchRequest
			want []string
		}{
			{"top 2", searchv1.SearchRequest{Model: "m-a", Dim: 4, Vector: vec(1, 0, 0, 0), TopK: 2}, []string{"red-shoe", "blue-shoe"}},
			{"offset", searchv1.SearchRequest{Model: "m-a", Vector: vec(1, 0, 0, 0), TopK: 2, Offset: 1}, []string{"blue-shoe", "bag"}},
			{"min score", searchv1.SearchRequest{Model: "m-a", Vector: vec(1, 0, 0, 0), MinScore: f32(0.9)}, []string{"red-shoe", "blue-shoe"}},
			{"filters", searchv1.SearchRequest{Model: "m-a", Vector: vec(1, 0, 0, 0), Filter: &searchv1.Filter{Brand: []string{"acme"}, InStock: b(true), PriceMin: f64(60)}}, []string{"bag"}},
			{"space b", searchv1.SearchRequest{Model: "m-b", Vector: vec(0, 0, 0, 0, 0, 1), TopK: 5}, []string{"red-shoe"}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				res, err := cl.Search(ctx, "products", tc.req)
				if err != nil {
					t.Fatal(err)
				}
				got := []string{}
				for _, h := range res.Results {
					got = append(got, h.SKU)
				}
				if !slices.Equal(got, tc.want) || res.Model != tc.req.Model {
					t.Fatalf("got %v (model %s), want %v", got, res.Model, tc.want)
				}
			})
		}
	})

	t.Run("refusals", func(t *testing.T) {
		tests := []struct {
			name   string
			do     func() error
			status int
			code   string
		}{
			{"search model mismatch", func() error {
				_, err := cl.Search(ctx, "products", searchv1.SearchRequest{Model: "m-c", Vector: vec(1, 0, 0, 0)})
				return err
			}, 400, apierror.CodeModelMismatch},
			{"search dim field mismatch", func() error {
				_, err := cl.Search(ctx, "products", searchv1.SearchRequest{Model: "m-a", Dim: 6, Vector: vec(1, 0, 0, 0)})
				return err
			}, 400, apierror.CodeDimensionMismatch},
			{"search vector of another space", func() error {
				_, err := cl.Search(ctx, "products", searchv1.SearchRequest{Model: "m-a", Vector: vec(0, 0, 0, 0, 0, 1)})
				return err
			}, 400, apierror.CodeDimensionMismatch},
			{"search without model", func() error {
				_, err := cl.Search(ctx, "products", searchv1.SearchRequest{Vector: vec(1, 0, 0, 0)})
				return err
			}, 400, apierror.CodeInvalidArgument},
			{"top_k over 1000", func() error {
				_, err := cl.Search(ctx, "products", searchv1.SearchRequest{Model: "m-a", Vector: vec(1, 0, 0, 0), TopK: 1001})
				return err
			}, 400, apierror.CodeInvalidArgument},
			{"negative offset", func() error {
				_, err := cl.Search(ctx, "products", searchv1.SearchRequest{Model: "m-a", Vector: vec(1, 0, 0, 0), Offset: -1})
				return err
			}, 400, apierror.CodeInvalidArgument},
			{"price range inverted", func() error {
				_, err := cl.Search(ctx, "products", searchv1.SearchRequest{Model: "m-a", Vector: vec(1, 0, 0, 0), Filter: &searchv1.Filter{PriceMin: f64(10), PriceMax: f64(5)}})
				return err
			}, 400, searchv1.CodeInvalidFilter},
			{"zero query", func() error {
				_, err := cl.Search(ctx, "products", searchv1.SearchRequest{Model: "m-a", Vector: vec(0, 0, 0, 0)})
				return err
			}, 400, searchv1.CodeInvalidVector},
			{"unknown catalog", func() error {
				_, err := cl.Search(ctx, "nope", searchv1.SearchRequest{Model: "m-a", Vector: vec(1, 0, 0, 0)})
				return err
			}, 404, apierror.CodeNotFound},
			{"bad catalog name", func() error {
				_, err := cl.Search(ctx, "Bad Name", searchv1.SearchRequest{Model: "m-a", Vector: vec(1, 0, 0, 0)})
				return err
			}, 400, searchv1.CodeInvalidName},
			{"upsert wrong dim", func() error {
				_, err := cl.Upsert(ctx, "products", searchv1.UpsertRequest{Model: "m-a", Points: []searchv1.Point{{SKU: "x", Vector: vec(1, 0)}}})
				return err
			}, 400, apierror.CodeDimensionMismatch},
			{"upsert without model", func() error {
				_, err := cl.Upsert(ctx, "products", searchv1.UpsertRequest{Points: []searchv1.Point{{SKU: "x", Vector: vec(1, 0, 0, 0)}}})
				return err
			}, 400, apierror.CodeInvalidArgument},
			{"upsert into a missing space", func() error {
				_, err := cl.Upsert(ctx, "products", searchv1.UpsertRequest{Model: "m-z", Points: []searchv1.Point{{SKU: "x", Vector: vec(1, 0, 0, 0)}}})
				return err
			}, 404, apierror.CodeNotFound},
			{"upsert empty sku", func() error {
				_, err := cl.Upsert(ctx, "products", searchv1.UpsertRequest{Model: "m-a", Points: []searchv1.Point{{Vector: vec(1, 0, 0, 0)}}})
				return err
			}, 400, searchv1.CodeInvalidSKU},
			{"upsert bad payload type", func() error {
				_, err := cl.Upsert(ctx, "products", searchv1.UpsertRequest{Model: "m-a", Points: []searchv1.Point{{SKU: "x", Vector: vec(1, 0, 0, 0), Payload: searchv1.Payload{"price": "cheap"}}}})
				return err
			}, 400, searchv1.CodeInvalidPayload},
			{"upsert too many points", func() error {
				pts := make([]searchv1.Point, searchv1.MaxUpsertBatch+1)
				_, err := cl.Upsert(ctx, "products", searchv1.UpsertRequest{Model: "m-a", Points: pts})
				return err
			}, 400, searchv1.CodeTooManyPoints},
			{"recommend absent sku", func() error {
				_, err := cl.Recommend(ctx, "products", searchv1.RecommendRequest{SKU: "nope"})
				return err
			}, 404, apierror.CodeNotFound},
			{"recommend in a missing space", func() error {
				_, err := cl.Recommend(ctx, "products", searchv1.RecommendRequest{SKU: "bag", Model: "m-z"})
				return err
			}, 400, apierror.CodeModelMismatch},
			{"get absent", func() error {
				_, err := cl.Get(ctx, "products", "nope", "")
				return err
			}, 404, apierror.CodeNotFound},
			{"create with other dim", func() error {
				_, err := cl.CreateCollection(ctx, searchv1.CreateCollectionRequest{Catalog: "products", Model: "m-a", Dim: 5})
				return err
			}, 409, apierror.CodeDimensionMismatch},
			{"create with bad dim", func() error {
				_, err := cl.CreateCollection(ctx, searchv1.CreateCollectionRequest{Catalog: "products", Model: "m-a", Dim: 0})
				return err
			}, 400, apierror.CodeInvalidArgument},
			{"create with bad model name", func() error {
				_, err := cl.CreateCollection(ctx, searchv1.CreateCollectionRequest{Catalog: "products", Model: "M__x", Dim: 4})
				return err
			}, 400, searchv1.CodeInvalidName},
			{"alias to a missing collection", func() error {
				_, err := cl.SwitchAlias(ctx, "products", "products__m-z")
				return err
			}, 404, apierror.CodeNotFound},
			{"absent alias", func() error {
				_, err := cl.Alias(ctx, "nope")
				return err
			}, 404, apierror.CodeNotFound},
			{"drop aliased collection", func() error {
				return cl.DropCollection(ctx, "products__m-a")
			}, 409, apierror.CodeConflict},
			{"drop absent collection", func() error {
				return cl.DropCollection(ctx, "products__m-z")
			}, 404, apierror.CodeNotFound},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) { wantCode(t, tc.do(), tc.status, tc.code) })
		}
	})

	t.Run("raw bodies", func(t *testing.T) {
		tests := []struct {
			name, method, path, body string
			status                   int
			code                     string
		}{
			{"invalid json", "POST", "/v1/catalogs/products/search", `{"model":`, 400, apierror.CodeBadRequest},
			{"bad base64 vector", "POST", "/v1/catalogs/products/search", `{"model":"m-a","vector":"***"}`, 400, apierror.CodeBadRequest},
			{"NaN vector", "POST", "/v1/catalogs/products/search", `{"model":"m-a","vector":"` + nanBase64() + `"}`, 400, searchv1.CodeInvalidVector},
			{"body over the limit", "POST", "/v1/catalogs/products/points", `{"model":"m-a","points":[{"sku":"x","payload":{"title":"` + strings.Repeat("a", 2<<20) + `"}}]}`, 413, apierror.CodePayloadTooLarge},
			{"array vector accepted", "POST", "/v1/catalogs/products/search", `{"model":"m-a","vector":[1,0,0,0],"top_k":1}`, 200, ""},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				req, _ := http.NewRequest(tc.method, base+tc.path, bytes.NewBufferString(tc.body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				if resp.StatusCode != tc.status {
					body, _ := io.ReadAll(resp.Body)
					t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tc.status)
				}
				if tc.code != "" {
					e := apierror.FromResponse(resp)
					if e.Code != tc.code {
						t.Fatalf("code %q, want %q", e.Code, tc.code)
					}
				}
			})
		}
	})

	t.Run("points", func(t *testing.T) {
		for _, sku := range []string{"a/b c", "50%off", "red-shoe"} {
			p, err := cl.Get(ctx, "products", sku, "")
			if err != nil || p.SKU != sku || len(p.Vector) != 4 {
				t.Fatalf("get %q: %+v %v", sku, p, err)
			}
		}
		p, err := cl.Get(ctx, "products", "red-shoe", "m-b")
		if err != nil || len(p.Vector) != 6 {
			t.Fatalf("get in space b: %+v %v", p, err)
		}
		if n, err := cl.Count(ctx, "products", ""); err != nil || n.Count != 5 || n.Collection != "products__m-a" {
			t.Fatalf("count %+v %v", n, err)
		}
		if err := cl.Delete(ctx, "products", "a/b c", "m-a"); err != nil {
			t.Fatal(err)
		}
		if err := cl.Delete(ctx, "products", "a/b c", "m-a"); err != nil {
			t.Fatalf("deleting an absent sku must succeed: %v", err)
		}
		if n, _ := cl.Count(ctx, "products", "m-a"); n.Count != 4 {
			t.Fatalf("count after delete %d", n.Count)
		}
	})

	t.Run("recommend and duplicates", func(t *testing.T) {
		res, err := cl.Recommend(ctx, "products", searchv1.RecommendRequest{SKU: "red-shoe", TopK: 2})
		if err != nil || len(res.Results) != 2 || res.Results[0].SKU != "blue-shoe" || res.Model != "m-a" {
			t.Fatalf("recommend: %+v %v", res, err)
		}
		tests := []struct {
			name string
			req  searchv1.DuplicateRequest
			dup  bool
			n    int
		}{
			{"exact copy", searchv1.DuplicateRequest{Model: "m-a", Vector: vec(2, 0, 0, 0), MinScore: 0.999}, true, 1},
			{"default threshold", searchv1.DuplicateRequest{Model: "m-a", Vector: vec(2, 0, 0, 0)}, true, 2},
			{"lower threshold", searchv1.DuplicateRequest{Model: "m-a", Vector: vec(1, 0, 0, 0), MinScore: 0.7}, true, 3},
			{"excluding itself", searchv1.DuplicateRequest{Model: "m-a", Vector: vec(1, 0, 0, 0), ExcludeSKU: "red-shoe"}, true, 1},
			{"nothing close", searchv1.DuplicateRequest{Model: "m-a", Vector: vec(0, 1, 0, 0)}, false, 0},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				d, err := cl.Duplicates(ctx, "products", tc.req)
				if err != nil || d.Duplicate != tc.dup || len(d.Matches) != tc.n {
					t.Fatalf("duplicates: %+v %v", d, err)
				}
			})
		}
	})

	t.Run("aliases and collections", func(t *testing.T) {
		if a, err := cl.SwitchAlias(ctx, "products", "products__m-b"); err != nil || a.Model != "m-b" {
			t.Fatalf("promote: %+v %v", a, err)
		}
		res, err := cl.Recommend(ctx, "products", searchv1.RecommendRequest{SKU: "red-shoe"})
		if err != nil || res.Model != "m-b" || res.Collection != "products__m-b" {
			t.Fatalf("after promote the alias answers from m-b: %+v %v", res, err)
		}
		list, err := cl.Aliases(ctx)
		if err != nil || len(list) != 1 || list[0].Collection != "products__m-b" {
			t.Fatalf("aliases %+v %v", list, err)
		}
		if err := cl.DropCollection(ctx, "products__m-a"); err != nil {
			t.Fatalf("drop after the alias moved: %v", err)
		}
		cs, err := cl.Collections(ctx)
		if err != nil || len(cs) != 1 || cs[0].Name != "products__m-b" || cs[0].Count != 1 {
			t.Fatalf("collections %+v %v", cs, err)
		}
		if c, err := cl.Collection(ctx, "products__m-b"); err != nil || c.Dim != 6 {
			t.Fatalf("collection %+v %v", c, err)
		}
		if err := cl.DeleteAlias(ctx, "products"); err != nil {
			t.Fatal(err)
		}
		wantCode(t, cl.DeleteAlias(ctx, "products"), 404, apierror.CodeNotFound)
		_, err = cl.Recommend(ctx, "products", searchv1.RecommendRequest{SKU: "red-shoe"})
		wantCode(t, err, 404, apierror.CodeNotFound)
	})
}
