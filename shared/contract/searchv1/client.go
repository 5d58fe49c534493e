package searchv1

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/lookalike-dev/lookalike/shared/contract/internal/wire"
)

// Client calls a search service.
type Client struct {
	BaseURL string    // e.g. http://127.0.0.1:8083
	HTTP    wire.Doer // nil means http.DefaultClient
}

func (c *Client) doer() wire.Doer {
	if c.HTTP == nil {
		return http.DefaultClient
	}
	return c.HTTP
}

// path fills ":name" segments of a route in order and escapes them.
func (c *Client) path(route string, args ...string) string {
	parts := strings.Split(route, "/")
	for i, p := range parts {
		if strings.HasPrefix(p, ":") && len(args) > 0 {
			parts[i] = url.PathEscape(args[0])
			args = args[1:]
		}
	}
	return strings.TrimRight(c.BaseURL, "/") + strings.Join(parts, "/")
}

func withModel(u, model string) string {
	if model == "" {
		return u
	}
	return u + "?" + ParamModel + "=" + url.QueryEscape(model)
}

// CreateCollection creates (or confirms) a catalog's collection for a model.
func (c *Client) CreateCollection(ctx context.Context, r CreateCollectionRequest) (CollectionInfo, error) {
	var out CollectionInfo
	err := wire.JSON(ctx, c.doer(), http.MethodPost, c.path(RouteCollections), r, &out)
	return out, err
}

// Collections lists the physical collections.
func (c *Client) Collections(ctx context.Context) ([]CollectionInfo, error) {
	var out CollectionList
	err := wire.JSON(ctx, c.doer(), http.MethodGet, c.path(RouteCollections), nil, &out)
	return out.Collections, err
}

// DropCollection deletes a physical collection.
func (c *Client) DropCollection(ctx context.Context, name string) error {
	return wire.JSON(ctx, c.doer(), http.MethodDelete, c.path(RouteCollection, name), nil, nil)
}

// Upsert writes points; a nil error means they are durable.
func (c *Client) Upsert(ctx context.Context, catalog string, r UpsertRequest) (UpsertResponse, error) {
	var out UpsertResponse
	err := wire.JSON(ctx, c.doer(), http.MethodPost, c.path(RoutePoints, catalog), r, &out)
	return out, err
}

// Search runs a vector query.
func (c *Client) Search(ctx context.Context, catalog string, r SearchRequest) (SearchResponse, error) {
	var out SearchResponse
	err := wire.JSON(ctx, c.doer(), http.MethodPost, c.path(RouteSearch, catalog), r, &out)
	return out, err
}

// Recommend runs "more like this" for a SKU.
func (c *Client) Recommend(ctx context.Context, catalog string, r RecommendRequest) (SearchResponse, error) {
	var out SearchResponse
	err := wire.JSON(ctx, c.doer(), http.MethodPost, c.path(RouteRecommend, catalog), r, &out)
	return out, err
}

// Get returns a stored point (payload and vector).
func (c *Client) Get(ctx context.Context, catalog, sku, model string) (Point, error) {
	var out Point
	err := wire.JSON(ctx, c.doer(), http.MethodGet, withModel(c.path(RoutePoint, catalog, sku), model), nil, &out)
	return out, err
}

// Delete removes a SKU; deleting an absent SKU succeeds.
func (c *Client) Delete(ctx context.Context, catalog, sku, model string) error {
	return wire.JSON(ctx, c.doer(), http.MethodDelete, withModel(c.path(RoutePoint, catalog, sku), model), nil, nil)
}

// Count returns the number of points.
func (c *Client) Count(ctx context.Context, catalog, model string) (CountResponse, error) {
	var out CountResponse
	err := wire.JSON(ctx, c.doer(), http.MethodGet, withModel(c.path(RouteCount, catalog), model), nil, &out)
	return out, err
}

// Alias returns where an alias points.
func (c *Client) Alias(ctx context.Context, alias string) (AliasInfo, error) {
	var out AliasInfo
	err := wire.JSON(ctx, c.doer(), http.MethodGet, c.path(RouteAlias, alias), nil, &out)
	return out, err
}

// SwitchAlias points alias at collection atomically (creating the alias).
func (c *Client) SwitchAlias(ctx context.Context, alias, collection string) (AliasInfo, error) {
	var out AliasInfo
	err := wire.JSON(ctx, c.doer(), http.MethodPut, c.path(RouteAlias, alias), SwitchAliasRequest{Collection: collection}, &out)
	return out, err
}
