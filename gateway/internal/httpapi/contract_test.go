package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/lookalike-dev/lookalike/gateway/internal/gatewaytest"
	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/gatewayv1"
)

// TestGatewayv1Client drives the public API through the contract's client:
// the types the gateway answers with are the ones its clients decode.
func TestGatewayv1Client(t *testing.T) {
	ctx := context.Background()
	env := gatewaytest.Start(t, gatewaytest.Options{})
	c := &gatewayv1.Client{BaseURL: env.URL, AdminKey: gatewaytest.AdminKey}
	for i := 1; i <= 4; i++ {
		md := map[string]any{"title": fmt.Sprintf("Product %d", i), "category": "a", "price": float64(i)}
		if err := c.IndexProduct(ctx, fmt.Sprintf("SKU-%d", i), pngOf(t, i), md); err != nil {
			t.Fatal(err)
		}
	}
	ms, err := c.Models(ctx)
	if err != nil || len(ms.Models) != 1 || ms.Models[0].ID != gatewaytest.ModelID || !ms.Models[0].Default {
		t.Fatalf("models %+v %v", ms, err)
	}
	res, err := c.SearchImage(ctx, pngOf(t, 2), url.Values{"top_k": {"2"}})
	if err != nil || res.Model != gatewaytest.ModelID || len(res.Results) != 2 || res.Results[0].SKU != "SKU-2" ||
		res.Results[0].Metadata["title"] != "Product 2" {
		t.Fatalf("image search %+v %v", res, err)
	}
	two := 2
	more, err := c.Search(ctx, gatewayv1.SearchRequest{SKU: "SKU-1", TopK: &two, Filters: &gatewayv1.Filters{Category: []string{"a"}}})
	if err != nil || len(more.Results) != 2 || more.Results[0].SKU == "SKU-1" {
		t.Fatalf("more like this %+v %v", more, err)
	}
	p, err := c.Product(ctx, "SKU-3", "")
	if err != nil || p.SKU != "SKU-3" || p.Metadata["title"] != "Product 3" || p.Dim != gatewaytest.Model().Dim {
		t.Fatalf("product %+v %v", p, err)
	}
	if err := c.DeleteProduct(ctx, "SKU-3"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Product(ctx, "SKU-3", ""); apierror.CodeOf(err) != apierror.CodeNotFound {
		t.Fatalf("deleted product: %v", err)
	}
	anon := &gatewayv1.Client{BaseURL: env.URL}
	if err := anon.DeleteProduct(ctx, "SKU-1"); err == nil {
		t.Fatal("an admin route without the key")
	} else if e, ok := apierror.As(err); !ok || e.Status != http.StatusUnauthorized {
		t.Fatalf("no key: %v", err)
	}
}
