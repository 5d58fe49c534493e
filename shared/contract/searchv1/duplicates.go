package searchv1

import (
	"context"
	"net/http"

	"github.com/lookalike-dev/lookalike/shared/contract/internal/wire"
)

// RouteDuplicates is the near-duplicate check: POST DuplicateRequest,
// answered by DuplicateResponse. (Added within v1: optional route.)
const RouteDuplicates = "/v1/catalogs/:catalog/duplicates"

// DefaultDuplicateScore is the cosine a near duplicate reaches when a
// DuplicateRequest names no MinScore.
const DefaultDuplicateScore = 0.95

// Machine codes the search service answers with, besides the shared ones
// (not_found, conflict, model_mismatch, dimension_mismatch, bad_request).
const (
	CodeInvalidVector  = "invalid_vector"  // zero, NaN or infinite values
	CodeInvalidSKU     = "invalid_sku"     // empty, too long or not UTF-8
	CodeInvalidPayload = "invalid_payload" // a well-known key of the wrong type
	CodeInvalidFilter  = "invalid_filter"  // e.g. price_min > price_max
	CodeInvalidName    = "invalid_name"    // catalog, model, alias or collection name
	CodeTooManyPoints  = "too_many_points" // over MaxUpsertBatch in one request
	// 503: the embedded index refuses writes after a failed disk write or
	// fsync until the service restarts; reads still work.
	CodeStorageFailed = "storage_failed"
)

// DuplicateRequest asks whether anything in the catalog's space for Model is
// at least MinScore (cosine) close to Vector.
type DuplicateRequest struct {
	Model  string `json:"model"`
	Dim    int    `json:"dim,omitempty"`
	Vector Vector `json:"vector"`
	// MinScore is the duplicate threshold (0: DefaultDuplicateScore).
	MinScore float32 `json:"min_score,omitempty"`
	// ExcludeSKU leaves one product out (the one being re-indexed).
	ExcludeSKU string `json:"exclude_sku,omitempty"`
	// TopK bounds the matches returned (0: DefaultDuplicateTopK).
	TopK int `json:"top_k,omitempty"`
}

// DefaultDuplicateTopK is the matches a DuplicateRequest naming no TopK gets.
const DefaultDuplicateTopK = 5

// Limits are the request's threshold and match count, defaults applied.
func (r DuplicateRequest) Limits() (minScore float32, topK int) {
	minScore, topK = r.MinScore, r.TopK
	if minScore == 0 {
		minScore = DefaultDuplicateScore
	}
	if topK == 0 {
		topK = DefaultDuplicateTopK
	}
	return minScore, topK
}

// DuplicateResponse lists the matches at or above the threshold, best first.
type DuplicateResponse struct {
	Collection string  `json:"collection"`
	Model      string  `json:"model"`
	Duplicate  bool    `json:"duplicate"`
	MinScore   float32 `json:"min_score"`
	Matches    []Hit   `json:"matches"`
}

// Duplicates runs the near-duplicate check.
func (c *Client) Duplicates(ctx context.Context, catalog string, r DuplicateRequest) (DuplicateResponse, error) {
	var out DuplicateResponse
	err := wire.JSON(ctx, c.doer(), http.MethodPost, c.path(RouteDuplicates, catalog), r, &out)
	return out, err
}

// DeleteAlias removes an alias (DELETE RouteAlias; added within v1).
func (c *Client) DeleteAlias(ctx context.Context, alias string) error {
	return wire.JSON(ctx, c.doer(), http.MethodDelete, c.path(RouteAlias, alias), nil, nil)
}

// Aliases lists every alias (GET RouteAliases).
func (c *Client) Aliases(ctx context.Context) ([]AliasInfo, error) {
	var out AliasList
	err := wire.JSON(ctx, c.doer(), http.MethodGet, c.path(RouteAliases), nil, &out)
	return out.Aliases, err
}

// Collection describes one physical collection (GET RouteCollection).
func (c *Client) Collection(ctx context.Context, name string) (CollectionInfo, error) {
	var out CollectionInfo
	err := wire.JSON(ctx, c.doer(), http.MethodGet, c.path(RouteCollection, name), nil, &out)
	return out, err
}
