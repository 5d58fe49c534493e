// Package service is the search service's API logic over a store.Store: it
// resolves catalogs and aliases to the physical collection of a model's
// vector space, validates requests, refuses a model or dimension mismatch,
// and turns store errors into envelope errors with stable codes.
package service

import (
	"context"
	"errors"
	"net/http"
	"sort"

	"github.com/lookalike-dev/lookalike/search/internal/store"
	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
)

// Service implements the searchv1 API.
type Service struct {
	store store.Store
}

// New serves the API over st.
func New(st store.Store) *Service { return &Service{store: st} }

// Store is the backend in use.
func (s *Service) Store() store.Store { return s.store }

// apiError maps a store error to an envelope error.
func apiError(err error) error {
	if err == nil {
		return nil
	}
	var ae *apierror.Error
	if errors.As(err, &ae) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return apierror.Wrap(err, http.StatusGatewayTimeout, apierror.CodeDeadlineExceeded, "search backend did not answer in time")
	}
	var se *store.Error
	if !errors.As(err, &se) {
		return err // a 500: a bug
	}
	switch se.Kind {
	case store.KindNotFound:
		return apierror.Wrap(err, http.StatusNotFound, apierror.CodeNotFound, "%s", se.Msg)
	case store.KindConflict:
		return apierror.Wrap(err, http.StatusConflict, apierror.CodeConflict, "%s", se.Msg)
	case store.KindInvalid:
		return apierror.Wrap(err, http.StatusBadRequest, apierror.CodeInvalidArgument, "%s", se.Msg)
	}
	if se.Code == searchv1.CodeStorageFailed {
		// Retrying this replica does not help until it restarts.
		return apierror.Wrap(err, http.StatusServiceUnavailable, se.Code, "the search index refuses writes after a storage failure until the service restarts")
	}
	return apierror.Wrap(err, http.StatusServiceUnavailable, apierror.CodeUnavailable, "search backend unavailable").WithRetryAfter(1)
}

func info(c store.Collection, backend string) searchv1.CollectionInfo {
	return searchv1.CollectionInfo{Name: c.Name, Catalog: c.Catalog, Model: c.Model, Dim: c.Dim, Count: c.Count, Backend: backend}
}

// CreateCollection creates (or confirms) a catalog's collection for a model
// and, with MakeAlias, points the catalog alias at it when it has none.
func (s *Service) CreateCollection(ctx context.Context, r searchv1.CreateCollectionRequest) (searchv1.CollectionInfo, error) {
	if !store.ValidPart(r.Catalog) {
		return searchv1.CollectionInfo{}, searchv1.BadName("catalog", r.Catalog)
	}
	if !store.ValidPart(r.Model) {
		return searchv1.CollectionInfo{}, searchv1.BadName("model", r.Model)
	}
	if r.Dim <= 0 || r.Dim > searchv1.MaxDim {
		return searchv1.CollectionInfo{}, apierror.BadRequest(apierror.CodeInvalidArgument, "dim must be 1..%d, got %d", searchv1.MaxDim, r.Dim)
	}
	c, err := s.store.CreateCollection(ctx, r.Catalog, r.Model, r.Dim)
	if err != nil {
		if store.KindOf(err) == store.KindConflict {
			return searchv1.CollectionInfo{}, apierror.Wrap(err, http.StatusConflict, apierror.CodeDimensionMismatch, "%v", err)
		}
		return searchv1.CollectionInfo{}, apiError(err)
	}
	if r.MakeAlias {
		if _, err := s.store.Alias(ctx, r.Catalog); store.KindOf(err) == store.KindNotFound {
			if err := s.store.SwitchAlias(ctx, r.Catalog, c.Name); err != nil {
				return searchv1.CollectionInfo{}, apiError(err)
			}
		} else if err != nil {
			return searchv1.CollectionInfo{}, apiError(err)
		}
	}
	return info(c, s.store.Backend()), nil
}

// Collections lists the physical collections.
func (s *Service) Collections(ctx context.Context) (searchv1.CollectionList, error) {
	cs, err := s.store.Collections(ctx)
	if err != nil {
		return searchv1.CollectionList{}, apiError(err)
	}
	out := searchv1.CollectionList{Collections: []searchv1.CollectionInfo{}}
	for _, c := range cs {
		out.Collections = append(out.Collections, info(c, s.store.Backend()))
	}
	return out, nil
}

// Collection describes one collection.
func (s *Service) Collection(ctx context.Context, name string) (searchv1.CollectionInfo, error) {
	c, err := s.store.Collection(ctx, name)
	if err != nil {
		return searchv1.CollectionInfo{}, apiError(err)
	}
	return info(c, s.store.Backend()), nil
}

// DropCollection drops a collection no alias points at.
func (s *Service) DropCollection(ctx context.Context, name string) error {
	return apiError(s.store.DropCollection(ctx, name))
}

// resolve finds the collection of catalog (a catalog or alias name) in
// model's space; an empty model means the one the catalog alias points at.
// forQuery makes "the catalog exists, but not in this space" a
// model_mismatch instead of not_found.
func (s *Service) resolve(ctx context.Context, catalog, model string, forQuery bool) (store.Collection, error) {
	if !store.ValidPart(catalog) {
		return store.Collection{}, searchv1.BadName("catalog", catalog)
	}
	aliasTarget, aerr := s.store.Alias(ctx, catalog)
	if aerr != nil && store.KindOf(aerr) != store.KindNotFound {
		return store.Collection{}, apiError(aerr)
	}
	if model == "" {
		if aerr != nil {
			return store.Collection{}, apierror.New(http.StatusNotFound, apierror.CodeNotFound, "catalog %q has no alias: name a model", catalog)
		}
		c, err := s.store.Collection(ctx, aliasTarget)
		return c, apiError(err)
	}
	if !store.ValidPart(model) {
		return store.Collection{}, searchv1.BadName("model", model)
	}
	names := []string{searchv1.CollectionName(catalog, model)}
	if aerr == nil {
		if cat, _, ok := store.SplitCollection(aliasTarget); ok && cat != catalog {
			names = append(names, searchv1.CollectionName(cat, model))
		}
	}
	for _, n := range names {
		c, err := s.store.Collection(ctx, n)
		if err == nil {
			return c, nil
		}
		if store.KindOf(err) != store.KindNotFound {
			return store.Collection{}, apiError(err)
		}
	}
	if forQuery && aerr == nil {
		_, live, _ := store.SplitCollection(aliasTarget)
		return store.Collection{}, apierror.BadRequest(apierror.CodeModelMismatch,
			"catalog %q has no vector space for model %q (alias %s -> %s, model %q); a query is never run across spaces",
			catalog, model, catalog, aliasTarget, live)
	}
	return store.Collection{}, apierror.New(http.StatusNotFound, apierror.CodeNotFound, "no collection %s", names[0])
}

// Upsert writes points into the catalog's collection for r.Model. A nil
// error means every point is durable and readable.
func (s *Service) Upsert(ctx context.Context, catalog string, r searchv1.UpsertRequest) (searchv1.UpsertResponse, error) {
	if r.Model == "" {
		return searchv1.UpsertResponse{}, apierror.BadRequest(apierror.CodeInvalidArgument, "model is required: it names the vector space")
	}
	if len(r.Points) > searchv1.MaxUpsertBatch {
		return searchv1.UpsertResponse{}, apierror.BadRequest(searchv1.CodeTooManyPoints, "%d points, at most %d per request", len(r.Points), searchv1.MaxUpsertBatch)
	}
	c, err := s.resolve(ctx, catalog, r.Model, false)
	if err != nil {
		return searchv1.UpsertResponse{}, err
	}
	pts := make([]store.Point, len(r.Points))
	seen := make(map[string]int, len(r.Points))
	for i, p := range r.Points {
		if err := searchv1.CheckSKU(p.SKU); err != nil {
			return searchv1.UpsertResponse{}, err
		}
		if err := searchv1.CheckVector(p.Vector, r.Dim, c.Name, c.Dim, "point "+p.SKU); err != nil {
			return searchv1.UpsertResponse{}, err
		}
		if err := searchv1.CheckPayload(p.SKU, p.Payload); err != nil {
			return searchv1.UpsertResponse{}, err
		}
		if j, dup := seen[p.SKU]; dup {
			pts[j] = store.Point{} // the last write of a SKU wins
		}
		seen[p.SKU] = i
		pts[i] = store.Point{SKU: p.SKU, Vector: p.Vector, Payload: p.Payload}
	}
	kept := pts[:0]
	for _, p := range pts {
		if p.SKU != "" {
			kept = append(kept, p)
		}
	}
	if err := s.store.Upsert(ctx, c.Name, kept); err != nil {
		return searchv1.UpsertResponse{}, apiError(err)
	}
	return searchv1.UpsertResponse{Collection: c.Name, Upserted: len(r.Points)}, nil
}

func queryParams(topK, offset int, minScore *float32, f *searchv1.Filter) (store.Query, error) {
	k, err := searchv1.CheckQuery(topK, offset, minScore, f)
	if err != nil {
		return store.Query{}, err
	}
	return store.Query{TopK: k, Offset: offset, MinScore: minScore, Filter: f}, nil
}

func response(c store.Collection, hits []store.Hit) searchv1.SearchResponse {
	out := searchv1.SearchResponse{Collection: c.Name, Model: c.Model, Results: make([]searchv1.Hit, 0, len(hits))}
	for _, h := range hits {
		out.Results = append(out.Results, searchv1.Hit{SKU: h.SKU, Score: h.Score, Payload: h.Payload, Vector: h.Vector})
	}
	return out
}

// Search runs a vector query in the space of r.Model.
func (s *Service) Search(ctx context.Context, catalog string, r searchv1.SearchRequest) (searchv1.SearchResponse, error) {
	if r.Model == "" {
		return searchv1.SearchResponse{}, apierror.BadRequest(apierror.CodeInvalidArgument, "model is required: a vector is only comparable within its model's space")
	}
	q, err := queryParams(r.TopK, r.Offset, r.MinScore, r.Filter)
	if err != nil {
		return searchv1.SearchResponse{}, err
	}
	c, err := s.resolve(ctx, catalog, r.Model, true)
	if err != nil {
		return searchv1.SearchResponse{}, err
	}
	if err := searchv1.CheckVector(r.Vector, r.Dim, c.Name, c.Dim, "query"); err != nil {
		return searchv1.SearchResponse{}, err
	}
	q.Vector, q.WithVectors = r.Vector, r.WithVectors
	hits, err := s.store.Search(ctx, c.Name, q)
	if err != nil {
		return searchv1.SearchResponse{}, apiError(err)
	}
	return response(c, hits), nil
}

// Recommend is "more like this": the stored vector of r.SKU is the query,
// and r.SKU is left out.
func (s *Service) Recommend(ctx context.Context, catalog string, r searchv1.RecommendRequest) (searchv1.SearchResponse, error) {
	if err := searchv1.CheckSKU(r.SKU); err != nil {
		return searchv1.SearchResponse{}, err
	}
	q, err := queryParams(r.TopK, r.Offset, r.MinScore, r.Filter)
	if err != nil {
		return searchv1.SearchResponse{}, err
	}
	c, err := s.resolve(ctx, catalog, r.Model, true)
	if err != nil {
		return searchv1.SearchResponse{}, err
	}
	hits, err := s.store.Recommend(ctx, c.Name, r.SKU, q)
	if err != nil {
		return searchv1.SearchResponse{}, apiError(err)
	}
	return response(c, hits), nil
}

// Duplicates reports the points at least MinScore close to a vector.
func (s *Service) Duplicates(ctx context.Context, catalog string, r searchv1.DuplicateRequest) (searchv1.DuplicateResponse, error) {
	if r.Model == "" {
		return searchv1.DuplicateResponse{}, apierror.BadRequest(apierror.CodeInvalidArgument, "model is required")
	}
	minScore, topK := r.Limits()
	q, err := queryParams(topK, 0, &minScore, nil)
	if err != nil {
		return searchv1.DuplicateResponse{}, err
	}
	c, err := s.resolve(ctx, catalog, r.Model, true)
	if err != nil {
		return searchv1.DuplicateResponse{}, err
	}
	if err := searchv1.CheckVector(r.Vector, r.Dim, c.Name, c.Dim, "query"); err != nil {
		return searchv1.DuplicateResponse{}, err
	}
	q.Vector, q.ExcludeSKU = r.Vector, r.ExcludeSKU
	hits, err := s.store.Search(ctx, c.Name, q)
	if err != nil {
		return searchv1.DuplicateResponse{}, apiError(err)
	}
	res := response(c, hits)
	return searchv1.DuplicateResponse{Collection: c.Name, Model: c.Model, Duplicate: len(hits) > 0, MinScore: minScore, Matches: res.Results}, nil
}

// Get returns a stored point with its vector and payload.
func (s *Service) Get(ctx context.Context, catalog, sku, model string) (searchv1.Point, error) {
	if err := searchv1.CheckSKU(sku); err != nil {
		return searchv1.Point{}, err
	}
	c, err := s.resolve(ctx, catalog, model, false)
	if err != nil {
		return searchv1.Point{}, err
	}
	p, err := s.store.Get(ctx, c.Name, sku)
	if err != nil {
		return searchv1.Point{}, apiError(err)
	}
	return searchv1.Point{SKU: p.SKU, Vector: p.Vector, Payload: p.Payload}, nil
}

// Delete removes a SKU; an absent SKU is not an error.
func (s *Service) Delete(ctx context.Context, catalog, sku, model string) error {
	if err := searchv1.CheckSKU(sku); err != nil {
		return err
	}
	c, err := s.resolve(ctx, catalog, model, false)
	if err != nil {
		return err
	}
	return apiError(s.store.Delete(ctx, c.Name, sku))
}

// Count counts the points of the catalog's collection.
func (s *Service) Count(ctx context.Context, catalog, model string) (searchv1.CountResponse, error) {
	c, err := s.resolve(ctx, catalog, model, false)
	if err != nil {
		return searchv1.CountResponse{}, err
	}
	n, err := s.store.Count(ctx, c.Name)
	if err != nil {
		return searchv1.CountResponse{}, apiError(err)
	}
	return searchv1.CountResponse{Collection: c.Name, Count: n}, nil
}

func aliasInfo(alias, coll string) searchv1.AliasInfo {
	_, model, _ := store.SplitCollection(coll)
	return searchv1.AliasInfo{Alias: alias, Collection: coll, Model: model}
}

// Alias returns where an alias points.
func (s *Service) Alias(ctx context.Context, alias string) (searchv1.AliasInfo, error) {
	if !searchv1.ValidName(alias) {
		return searchv1.AliasInfo{}, searchv1.BadName("alias", alias)
	}
	c, err := s.store.Alias(ctx, alias)
	if err != nil {
		return searchv1.AliasInfo{}, apiError(err)
	}
	return aliasInfo(alias, c), nil
}

// Aliases lists aliases by name.
func (s *Service) Aliases(ctx context.Context) (searchv1.AliasList, error) {
	all, err := s.store.Aliases(ctx)
	if err != nil {
		return searchv1.AliasList{}, apiError(err)
	}
	out := searchv1.AliasList{Aliases: []searchv1.AliasInfo{}}
	for a, c := range all {
		out.Aliases = append(out.Aliases, aliasInfo(a, c))
	}
	sort.Slice(out.Aliases, func(i, j int) bool { return out.Aliases[i].Alias < out.Aliases[j].Alias })
	return out, nil
}

// SwitchAlias points alias at a collection atomically (idempotent).
func (s *Service) SwitchAlias(ctx context.Context, alias string, r searchv1.SwitchAliasRequest) (searchv1.AliasInfo, error) {
	if !searchv1.ValidName(alias) {
		return searchv1.AliasInfo{}, searchv1.BadName("alias", alias)
	}
	if _, _, ok := store.SplitCollection(r.Collection); !ok {
		return searchv1.AliasInfo{}, apierror.BadRequest(searchv1.CodeInvalidName, "collection %q is not <catalog>__<model>", r.Collection)
	}
	if err := s.store.SwitchAlias(ctx, alias, r.Collection); err != nil {
		return searchv1.AliasInfo{}, apiError(err)
	}
	return aliasInfo(alias, r.Collection), nil
}

// DeleteAlias removes an alias.
func (s *Service) DeleteAlias(ctx context.Context, alias string) error {
	if !searchv1.ValidName(alias) {
		return searchv1.BadName("alias", alias)
	}
	return apiError(s.store.DeleteAlias(ctx, alias))
}
