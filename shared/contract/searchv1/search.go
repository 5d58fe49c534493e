// Package searchv1 is the wire contract of the search service, version 1.
// Standard library and the shared error envelope only.
//
// A catalog (e.g. "products") has one physical collection per model,
// named CollectionName(catalog, model) = "products__mobilenetv2-int8-v1". The
// alias named like the catalog points at the live (stable) collection.
package searchv1

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
)

// Routes. ":catalog" is a catalog or alias name, ":sku" a product SKU.
const (
	RouteCollections = "/v1/collections"                   // POST CreateCollectionRequest; GET lists
	RouteCollection  = "/v1/collections/:collection"       // GET CollectionInfo; DELETE drops
	RoutePoints      = "/v1/catalogs/:catalog/points"      // POST UpsertRequest
	RoutePoint       = "/v1/catalogs/:catalog/points/:sku" // GET (?model=) Point; DELETE (?model=)
	RouteCount       = "/v1/catalogs/:catalog/count"       // GET (?model=) CountResponse
	RouteSearch      = "/v1/catalogs/:catalog/search"      // POST SearchRequest
	RouteRecommend   = "/v1/catalogs/:catalog/recommend"   // POST RecommendRequest ("more like this")
	RouteAliases     = "/v1/aliases"                       // GET lists
	RouteAlias       = "/v1/aliases/:alias"                // GET AliasInfo; PUT SwitchAliasRequest
)

// ParamModel selects the model (vector space) on GET/DELETE routes.
const ParamModel = "model"

// Limits.
const (
	MaxTopK = 1000
	MaxDim  = 65536
	// MaxUpsertBatch bounds the points in one upsert request.
	MaxUpsertBatch = 1024
)

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// ValidName checks a catalog, model id or alias name.
func ValidName(s string) bool { return namePattern.MatchString(s) }

// CollectionName is the physical collection of a catalog in a model's space.
func CollectionName(catalog, model string) string { return catalog + "__" + model }

// Vector is a float32 vector. In JSON it is base64 of little-endian float32
// (compact and exact); a plain JSON array of numbers is accepted on input.
type Vector []float32

// MarshalText encodes v as base64 of little-endian float32; encoding/json
// writes it as a JSON string. (A MarshalJSON would have its output
// re-scanned by encoding/json: ~40% of a query's vector encoding.)
func (v Vector) MarshalText() ([]byte, error) {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	out := make([]byte, base64.StdEncoding.EncodedLen(len(b)))
	base64.StdEncoding.Encode(out, b)
	return out, nil
}

// UnmarshalJSON accepts base64 of little-endian float32 or a number array.
func (v *Vector) UnmarshalJSON(data []byte) error {
	if len(data) > 0 && data[0] == '[' {
		var fs []float32
		if err := json.Unmarshal(data, &fs); err != nil {
			return fmt.Errorf("vector: %w", err)
		}
		*v = fs
		return nil
	}
	text, err := jsonStringBytes(data)
	if err != nil {
		return err
	}
	b := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
	n, err := base64.StdEncoding.Decode(b, text)
	if err != nil {
		return fmt.Errorf("vector base64: %w", err)
	}
	b = b[:n]
	if len(b)%4 != 0 {
		return fmt.Errorf("vector of %d bytes is not float32", len(b))
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	*v = out
	return nil
}

// jsonStringBytes is the content of a JSON string: its bytes as they are when it
// has no escapes (what every encoder writes for base64), without a second
// pass through encoding/json; else unescaped by it.
func jsonStringBytes(data []byte) ([]byte, error) {
	if n := len(data); n >= 2 && data[0] == '"' && data[n-1] == '"' && bytes.IndexByte(data[1:n-1], '\\') < 0 {
		return data[1 : n-1], nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("vector must be base64 float32 or an array: %w", err)
	}
	return []byte(s), nil
}

// Payload is the product data kept with a point. Well-known keys (indexed):
// sku, title, category (keyword), brand (keyword), price (float),
// in_stock (bool), image. Other keys are kept as given.
type Payload map[string]any

// CreateCollectionRequest creates the collection of a catalog in a model's
// space, with its payload indexes. It is idempotent when dim matches.
type CreateCollectionRequest struct {
	Catalog string `json:"catalog"`
	Model   string `json:"model"`
	Dim     int    `json:"dim"`
	// MakeAlias points the catalog alias at this collection when the alias
	// does not exist yet.
	MakeAlias bool `json:"make_alias,omitempty"`
}

// CollectionInfo describes a physical collection.
type CollectionInfo struct {
	Name    string `json:"name"`
	Catalog string `json:"catalog"`
	Model   string `json:"model"`
	Dim     int    `json:"dim"`
	Count   int64  `json:"count"`
	Backend string `json:"backend,omitempty"`
}

// CollectionList is the GET RouteCollections response.
type CollectionList struct {
	Collections []CollectionInfo `json:"collections"`
}

// Point is one product in one vector space.
type Point struct {
	SKU     string  `json:"sku"`
	Vector  Vector  `json:"vector,omitempty"`
	Payload Payload `json:"payload,omitempty"`
}

// UpsertRequest writes points into the catalog's collection for Model.
// A 2xx answer means every point is durable and readable.
type UpsertRequest struct {
	Model  string  `json:"model"`
	Dim    int     `json:"dim"`
	Points []Point `json:"points"`
}

// UpsertResponse acknowledges an upsert.
type UpsertResponse struct {
	Collection string `json:"collection"`
	Upserted   int    `json:"upserted"`
}

// Filter narrows a query. Empty fields do not filter.
type Filter struct {
	Category []string `json:"category,omitempty"`
	Brand    []string `json:"brand,omitempty"`
	PriceMin *float64 `json:"price_min,omitempty"`
	PriceMax *float64 `json:"price_max,omitempty"`
	InStock  *bool    `json:"in_stock,omitempty"`
}

// SearchRequest is a nearest-neighbour query. Model and Dim name the space
// the vector comes from; the service refuses a mismatch with the collection.
type SearchRequest struct {
	Model    string   `json:"model"`
	Dim      int      `json:"dim,omitempty"`
	Vector   Vector   `json:"vector"`
	TopK     int      `json:"top_k,omitempty"`
	Offset   int      `json:"offset,omitempty"`
	MinScore *float32 `json:"min_score,omitempty"`
	Filter   *Filter  `json:"filter,omitempty"`
	// WithVectors returns the stored vectors too.
	WithVectors bool `json:"with_vectors,omitempty"`
}

// RecommendRequest is "more like this": the stored vector of SKU is the
// query, and SKU itself is left out of the results.
type RecommendRequest struct {
	SKU      string   `json:"sku"`
	Model    string   `json:"model,omitempty"` // empty: the catalog alias's model
	TopK     int      `json:"top_k,omitempty"`
	Offset   int      `json:"offset,omitempty"`
	MinScore *float32 `json:"min_score,omitempty"`
	Filter   *Filter  `json:"filter,omitempty"`
}

// Hit is one result.
type Hit struct {
	SKU     string  `json:"sku"`
	Score   float32 `json:"score"`
	Payload Payload `json:"payload,omitempty"`
	Vector  Vector  `json:"vector,omitempty"`
}

// SearchResponse is the answer to search and recommend, best first.
type SearchResponse struct {
	Collection string `json:"collection"`
	Model      string `json:"model"`
	Results    []Hit  `json:"results"`
}

// CountResponse is the RouteCount answer.
type CountResponse struct {
	Collection string `json:"collection"`
	Count      int64  `json:"count"`
}

// AliasInfo names the collection an alias points at.
type AliasInfo struct {
	Alias      string `json:"alias"`
	Collection string `json:"collection"`
	Model      string `json:"model,omitempty"`
}

// AliasList is the GET RouteAliases response.
type AliasList struct {
	Aliases []AliasInfo `json:"aliases"`
}

// SwitchAliasRequest points an alias at a collection, atomically.
type SwitchAliasRequest struct {
	Collection string `json:"collection"`
}
