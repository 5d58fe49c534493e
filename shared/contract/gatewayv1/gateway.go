// Package gatewayv1 is the public HTTP API of the gateway, version 1: the
// shoppers' search, the models, and the admin API's products. The gateway
// answers with these types; clients (the end-to-end tests, tools) decode
// them. Errors are the shared envelope (shared/apierror).
package gatewayv1

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"

	"github.com/lookalike-dev/lookalike/shared/contract/internal/wire"
)

// Routes. ":sku" is a product SKU.
const (
	RouteSearch       = "/v1/search"              // POST multipart (image) or JSON SearchRequest; SearchResponse
	RouteModels       = "/v1/models"              // GET ModelList
	RouteProducts     = "/v1/products"            // POST multipart sku, image, metadata (admin)
	RouteProduct      = "/v1/products/:sku"       // GET Product, PUT, DELETE (admin)
	RouteProductImage = "/v1/products/:sku/image" // GET the product's photo
	RouteOpenAPI      = "/openapi.json"           // GET the OpenAPI document
)

// ParamModel names the model (vector space) on query strings.
const ParamModel = "model"

// List is a list of strings that also decodes from one comma-separated
// string: "a", "a,b" or ["a","b"].
type List []string

// UnmarshalJSON takes a JSON array or one comma-separated string.
func (l *List) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '[' {
		var all []string
		if err := json.Unmarshal(b, &all); err != nil {
			return err
		}
		*l = all
		return nil
	}
	var one string
	if err := json.Unmarshal(b, &one); err != nil {
		return err
	}
	*l = SplitList(one)
	return nil
}

// SplitList splits a comma-separated value, dropping blanks.
func SplitList(v string) List {
	var out List
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Filters narrow a search. Empty fields do not filter.
type Filters struct {
	Category List     `json:"category,omitempty"`
	Brand    List     `json:"brand,omitempty"`
	PriceMin *float64 `json:"price_min,omitempty"`
	PriceMax *float64 `json:"price_max,omitempty"`
	InStock  *bool    `json:"in_stock,omitempty"`
}

// SearchRequest is the JSON body of POST RouteSearch: an image URL, or the
// SKU of a product for "more like this".
type SearchRequest struct {
	ImageURL string   `json:"image_url,omitempty"`
	SKU      string   `json:"sku,omitempty"`
	TopK     *int     `json:"top_k,omitempty"`
	MinScore *float32 `json:"min_score,omitempty"`
	Model    string   `json:"model,omitempty"`
	Filters  *Filters `json:"filters,omitempty"`
}

// Hit is one search result.
type Hit struct {
	SKU      string         `json:"sku"`
	Score    float32        `json:"score"`
	Metadata map[string]any `json:"metadata"`
}

// SearchResponse is the answer of POST RouteSearch, best first.
type SearchResponse struct {
	Model   string `json:"model"`
	Results []Hit  `json:"results"`
}

// ModelInfo is the public view of a served model.
type ModelInfo struct {
	ID      string `json:"id"`
	Version string `json:"version"`
	Dim     int    `json:"dim"`
	Default bool   `json:"default"`
}

// ModelList is the answer of GET RouteModels.
type ModelList struct {
	Models []ModelInfo `json:"models"`
}

// Product is the answer of GET RouteProduct.
type Product struct {
	SKU      string         `json:"sku"`
	Metadata map[string]any `json:"metadata"`
	Dim      int            `json:"dim,omitempty"`
}

// Client calls a gateway. AdminKey is sent on the admin routes only.
type Client struct {
	BaseURL  string
	AdminKey string
	HTTP     wire.Doer // nil means http.DefaultClient
}

func (c *Client) doer() wire.Doer {
	if c.HTTP == nil {
		return http.DefaultClient
	}
	return c.HTTP
}

func (c *Client) url(route, sku string, q url.Values) string {
	u := strings.TrimRight(c.BaseURL, "/") + strings.Replace(route, ":sku", url.PathEscape(sku), 1)
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

func (c *Client) admin() http.Header {
	return http.Header{"Authorization": {"Bearer " + c.AdminKey}}
}

func decode[T any](b []byte, _ http.Header, err error) (T, error) {
	var out T
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return out, fmt.Errorf("decoding the gateway's answer: %w", err)
	}
	return out, nil
}

// Multipart builds a multipart/form-data body from fields and files (field
// name -> bytes) and returns it with its content type.
func Multipart(fields map[string]string, files map[string][]byte) ([]byte, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		_ = mw.WriteField(k, v)
	}
	for k, v := range files {
		w, _ := mw.CreateFormFile(k, k+".bin")
		_, _ = w.Write(v)
	}
	_ = mw.Close()
	return buf.Bytes(), mw.FormDataContentType()
}

// SearchImage uploads a photo; q holds query parameters (top_k, model,
// filters), nil for none.
func (c *Client) SearchImage(ctx context.Context, image []byte, q url.Values) (SearchResponse, error) {
	body, ct := Multipart(nil, map[string][]byte{"image": image})
	return decode[SearchResponse](wire.Call(ctx, c.doer(), http.MethodPost, c.url(RouteSearch, "", q), ct, body, nil))
}

// Search sends a JSON search: an image URL or a SKU's "more like this".
func (c *Client) Search(ctx context.Context, r SearchRequest) (SearchResponse, error) {
	var out SearchResponse
	err := wire.JSON(ctx, c.doer(), http.MethodPost, c.url(RouteSearch, "", nil), r, &out)
	return out, err
}

// Models lists the served models.
func (c *Client) Models(ctx context.Context) (ModelList, error) {
	var out ModelList
	err := wire.JSON(ctx, c.doer(), http.MethodGet, c.url(RouteModels, "", nil), nil, &out)
	return out, err
}

// IndexProduct writes a product with its photo and metadata (admin).
func (c *Client) IndexProduct(ctx context.Context, sku string, image []byte, metadata map[string]any) error {
	meta, err := json.Marshal(metadata)
	if err != nil {
		return fmt.Errorf("encoding %s's metadata: %w", sku, err)
	}
	body, ct := Multipart(map[string]string{"sku": sku, "metadata": string(meta)}, map[string][]byte{"image": image})
	_, _, err = wire.Call(ctx, c.doer(), http.MethodPost, c.url(RouteProducts, "", nil), ct, body, c.admin())
	return err
}

// Product reads a product (admin); model "" is the live one.
func (c *Client) Product(ctx context.Context, sku, model string) (Product, error) {
	q := url.Values{}
	if model != "" {
		q.Set(ParamModel, model)
	}
	return decode[Product](wire.Call(ctx, c.doer(), http.MethodGet, c.url(RouteProduct, sku, q), "", nil, c.admin()))
}

// DeleteProduct deletes a product (admin).
func (c *Client) DeleteProduct(ctx context.Context, sku string) error {
	_, _, err := wire.Call(ctx, c.doer(), http.MethodDelete, c.url(RouteProduct, sku, nil), "", nil, c.admin())
	return err
}
