// Package e2e runs the whole suite as real processes on loopback.
package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lookalike-dev/lookalike/e2e/internal/stack"
)

// TestFoundationEndToEnd indexes the demo catalog through the gateway and
// checks that every product finds itself first and that each second-view
// query finds its product in the top 5; then that bad requests get 4xx codes.
func TestFoundationEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs in the full suite (make test-unit)")
	}
	s := stack.New(t, stack.Options{})
	s.Start(t)
	c := stack.NewClient(s.Gateway(), s.AdminKey)
	catDir := filepath.Dir(s.Env.CatalogJL)
	products, err := stack.ReadJSONL[stack.Product](s.Env.CatalogJL)
	if err != nil || len(products) != 50 {
		t.Fatalf("catalog: %d products, %v", len(products), err)
	}

	// Index all 50 through the admin API, 4 at a time.
	if err := c.IndexAll(catDir, products, 4); err != nil {
		t.Fatal(err)
	}

	t.Run("every catalog image finds itself first", func(t *testing.T) {
		model := ""
		for _, p := range products {
			img, err := os.ReadFile(filepath.Join(catDir, p.Image))
			if err != nil {
				t.Fatal(err)
			}
			r, err := c.SearchImage(img, "?top_k=3")
			if err != nil {
				t.Fatalf("%s: %v", p.SKU, err)
			}
			if len(r.Results) == 0 || r.Results[0].SKU != p.SKU {
				t.Errorf("%s: rank 1 is %+v", p.SKU, r.Results)
				continue
			}
			if r.Results[0].Score < 0.99 {
				t.Errorf("%s: self score %.4f < 0.99", p.SKU, r.Results[0].Score)
			}
			if r.Results[0].Metadata["title"] != p.Title {
				t.Errorf("%s: metadata %v", p.SKU, r.Results[0].Metadata)
			}
			if model == "" {
				model = r.Model
			} else if r.Model != model {
				t.Errorf("model changed from %q to %q", model, r.Model)
			}
		}
		if model == "" {
			t.Error("responses name no model")
		}
	})

	t.Run("second-view queries find their product in the top 5", func(t *testing.T) {
		queries, err := stack.ReadJSONL[stack.Query](filepath.Join(catDir, "queries.jsonl"))
		if err != nil || len(queries) != 5 {
			t.Fatalf("queries: %d, %v", len(queries), err)
		}
		for _, q := range queries {
			img, err := os.ReadFile(filepath.Join(catDir, q.Image))
			if err != nil {
				t.Fatal(err)
			}
			r, err := c.SearchImage(img, "?top_k=5")
			if err != nil {
				t.Fatalf("%s: %v", q.Image, err)
			}
			rank := -1
			for i, h := range r.Results {
				if h.SKU == q.ExpectSKU {
					rank = i + 1
				}
			}
			t.Logf("%s (%s): %s at rank %d", q.Image, q.What, q.ExpectSKU, rank)
			if rank < 1 || rank > 5 {
				t.Errorf("%s: %s not in top 5: %+v", q.Image, q.ExpectSKU, r.Results)
			}
		}
	})

	t.Run("bad requests get 4xx with a code", func(t *testing.T) {
		truncated, err := os.ReadFile(filepath.Join(catDir, "bad", "truncated.jpg"))
		if err != nil {
			t.Fatal(err)
		}
		good, _ := os.ReadFile(filepath.Join(catDir, products[0].Image))
		meta := `{"title":"x"}`
		type req struct {
			name, method, path string
			fields             map[string]string
			files              map[string][]byte
			admin              bool
		}
		tests := []req{
			{"search without image", "POST", "/v1/search", map[string]string{"x": "1"}, nil, false},
			{"search with text as image", "POST", "/v1/search", nil, map[string][]byte{"image": []byte("hello, this is not an image")}, false},
			{"search with truncated jpeg", "POST", "/v1/search", nil, map[string][]byte{"image": truncated}, false},
			{"search with empty image", "POST", "/v1/search", nil, map[string][]byte{"image": {}}, false},
			{"search with bad top_k", "POST", "/v1/search?top_k=abc", nil, map[string][]byte{"image": good}, false},
			{"index without sku", "POST", "/v1/products", map[string]string{"metadata": meta}, map[string][]byte{"image": good}, true},
			{"index without image", "POST", "/v1/products", map[string]string{"sku": "X-1", "metadata": meta}, nil, true},
			{"index not an image", "POST", "/v1/products", map[string]string{"sku": "X-1", "metadata": meta}, map[string][]byte{"image": []byte("<html>")}, true},
			{"index truncated jpeg", "POST", "/v1/products", map[string]string{"sku": "X-1", "metadata": meta}, map[string][]byte{"image": truncated}, true},
			{"index bad metadata", "POST", "/v1/products", map[string]string{"sku": "X-1", "metadata": "{not json"}, map[string][]byte{"image": good}, true},
			{"index without key", "POST", "/v1/products", map[string]string{"sku": "X-1", "metadata": meta}, map[string][]byte{"image": good}, false},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				body, ct := stack.Multipart(tc.fields, tc.files)
				st, b, _, err := c.Do(tc.method, tc.path, ct, body, tc.admin)
				if err != nil {
					t.Fatal(err)
				}
				var env stack.ErrorBody
				if st < 400 || st > 499 || json.Unmarshal(b, &env) != nil || env.Error.Code == "" || env.Error.Message == "" {
					t.Fatalf("got %d %s, want 4xx with an error code", st, b)
				}
				t.Logf("%d %s", st, env.Error.Code)
			})
		}
		// A JSON search body that is not JSON.
		st, b, _, err := c.Do("POST", "/v1/search", "application/json", strings.NewReader("{"), false)
		if err != nil || st/100 != 4 || !strings.Contains(string(b), `"code"`) {
			t.Fatalf("bad JSON search: %d %s %v", st, b, err)
		}
		// Nothing accepted was lost: the catalog count is intact.
		st, b, _, _ = c.Do(http.MethodGet, "/v1/products/"+products[0].SKU, "", nil, true)
		if st != http.StatusOK {
			t.Fatalf("product lookup after bad requests: %d %s", st, b)
		}
	})

	t.Run("the admin key never reaches the logs", func(t *testing.T) {
		if strings.Contains(s.Logs(), s.AdminKey) {
			t.Fatal("an admin key was logged")
		}
	})
}
