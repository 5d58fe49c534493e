// Package searchv1test is an in-memory search service for other services'
// tests. It serves every searchv1 route with the contract's own rules
// (searchv1.CheckSKU, CheckVector, CheckPayload, CheckQuery, Filter.Match),
// the statuses and codes the real service answers with, and exact cosine
// ranking, so a test against it sees what it would see against search.
package searchv1test

import (
	"encoding/json"
	"math"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/internal/double"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
)

type collection struct {
	catalog, model string
	dim            int
	points         map[string]searchv1.Point
	writes         map[string]int
}

// Server is the in-memory search service. The zero value is not usable: call New.
type Server struct {
	double.Base
	mu      sync.Mutex
	colls   map[string]*collection
	aliases map[string]string

	queries atomic.Int64
	upserts atomic.Int64
}

// New returns an empty search service; serve it with Handler or Serve.
func New() *Server {
	return &Server{colls: map[string]*collection{}, aliases: map[string]string{}}
}

// Queries counts the searches, recommendations and upserts served.
func (s *Server) Queries() int64 { return s.queries.Load() }

// Upserts counts the upsert requests applied.
func (s *Server) Upserts() int64 { return s.upserts.Load() }

// Count is the number of points in a collection.
func (s *Server) Count(coll string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.colls[coll]; c != nil {
		return len(c.points)
	}
	return 0
}

// Points returns a copy of a collection's points by SKU.
func (s *Server) Points(coll string) map[string]searchv1.Point {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]searchv1.Point{}
	if c := s.colls[coll]; c != nil {
		for k, v := range c.points {
			out[k] = v
		}
	}
	return out
}

// Writes is how many times each SKU was written into a collection (a
// replayed write shows here, not in the point count).
func (s *Server) Writes(coll string) map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	if c := s.colls[coll]; c != nil {
		for k, v := range c.writes {
			out[k] = v
		}
	}
	return out
}

// Dim is a collection's dimension, 0 when it does not exist.
func (s *Server) Dim(coll string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.colls[coll]; c != nil {
		return c.dim
	}
	return 0
}

// Alias returns the collection an alias points at ("" for none).
func (s *Server) Alias(alias string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.aliases[alias]
}

// route turns a searchv1 route ("/v1/catalogs/:catalog/points") into a
// ServeMux pattern ("/v1/catalogs/{catalog}/points").
func route(method, r string) string {
	parts := strings.Split(r, "/")
	for i, p := range parts {
		if strings.HasPrefix(p, ":") {
			parts[i] = "{" + p[1:] + "}"
		}
	}
	return method + " " + strings.Join(parts, "/")
}

type handler func(r *http.Request) (any, error)

// Serve starts s on a loopback httptest server; Close stops it.
func (s *Server) Serve() *Server {
	s.Start(s.Handler())
	return s
}

// Handler serves the searchv1 routes and /readyz.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", s.Readyz)
	for pattern, h := range map[string]handler{
		route("POST", searchv1.RouteCollections):  s.createCollection,
		route("GET", searchv1.RouteCollections):   s.collections,
		route("GET", searchv1.RouteCollection):    s.collection,
		route("DELETE", searchv1.RouteCollection): s.dropCollection,
		route("POST", searchv1.RoutePoints):       s.upsert,
		route("GET", searchv1.RoutePoint):         s.get,
		route("DELETE", searchv1.RoutePoint):      s.delete,
		route("GET", searchv1.RouteCount):         s.count,
		route("POST", searchv1.RouteSearch):       s.search,
		route("POST", searchv1.RouteRecommend):    s.recommend,
		route("POST", searchv1.RouteDuplicates):   s.duplicates,
		route("GET", searchv1.RouteAliases):       s.listAliases,
		route("GET", searchv1.RouteAlias):         s.alias,
		route("PUT", searchv1.RouteAlias):         s.switchAlias,
		route("DELETE", searchv1.RouteAlias):      s.deleteAlias,
	} {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			out, err := h(r)
			if err != nil {
				e, ok := apierror.As(err)
				if !ok {
					e = apierror.Wrap(err, http.StatusInternalServerError, apierror.CodeInternal, "%v", err)
				}
				apierror.Write(w, e)
				return
			}
			if out == nil {
				w.WriteHeader(http.StatusNoContent)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(out)
		})
	}
	return mux
}

func decode(r *http.Request, v any) error {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		return apierror.BadRequest(apierror.CodeBadRequest, "request body: %v", err)
	}
	return nil
}

func notFound(format string, args ...any) error {
	return apierror.New(http.StatusNotFound, apierror.CodeNotFound, format, args...)
}

func (c *collection) info(name string) searchv1.CollectionInfo {
	return searchv1.CollectionInfo{Name: name, Catalog: c.catalog, Model: c.model, Dim: c.dim, Count: int64(len(c.points)), Backend: "searchv1test"}
}

func (s *Server) createCollection(r *http.Request) (any, error) {
	var req searchv1.CreateCollectionRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if !searchv1.ValidPart(req.Catalog) {
		return nil, searchv1.BadName("catalog", req.Catalog)
	}
	if !searchv1.ValidPart(req.Model) {
		return nil, searchv1.BadName("model", req.Model)
	}
	if req.Dim <= 0 || req.Dim > searchv1.MaxDim {
		return nil, apierror.BadRequest(apierror.CodeInvalidArgument, "dim must be 1..%d, got %d", searchv1.MaxDim, req.Dim)
	}
	name := searchv1.CollectionName(req.Catalog, req.Model)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.colls[name]
	if c != nil && c.dim != req.Dim {
		return nil, apierror.New(http.StatusConflict, apierror.CodeDimensionMismatch, "collection %s exists with dim %d, not %d", name, c.dim, req.Dim)
	}
	if c == nil {
		c = &collection{catalog: req.Catalog, model: req.Model, dim: req.Dim, points: map[string]searchv1.Point{}, writes: map[string]int{}}
		s.colls[name] = c
	}
	if _, ok := s.aliases[req.Catalog]; req.MakeAlias && !ok {
		s.aliases[req.Catalog] = name
	}
	return c.info(name), nil
}

func (s *Server) collections(*http.Request) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := searchv1.CollectionList{Collections: []searchv1.CollectionInfo{}}
	for name, c := range s.colls {
		out.Collections = append(out.Collections, c.info(name))
	}
	sort.Slice(out.Collections, func(i, j int) bool { return out.Collections[i].Name < out.Collections[j].Name })
	return out, nil
}

func (s *Server) collection(r *http.Request) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := r.PathValue("collection")
	c := s.colls[name]
	if c == nil {
		return nil, notFound("collection %q not found", name)
	}
	return c.info(name), nil
}

func (s *Server) dropCollection(r *http.Request) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := r.PathValue("collection")
	if s.colls[name] == nil {
		return nil, notFound("collection %q not found", name)
	}
	for a, c := range s.aliases {
		if c == name {
			return nil, apierror.New(http.StatusConflict, apierror.CodeConflict, "alias %q points at collection %s; switch or delete it first", a, name)
		}
	}
	delete(s.colls, name)
	return nil, nil
}

// resolve finds the collection of catalog (a catalog or alias name) in
// model's space, as the search service does; s.mu is held.
func (s *Server) resolve(catalog, model string, forQuery bool) (string, *collection, error) {
	if !searchv1.ValidPart(catalog) {
		return "", nil, searchv1.BadName("catalog", catalog)
	}
	target, aliased := s.aliases[catalog]
	if model == "" {
		if !aliased {
			return "", nil, notFound("catalog %q has no alias: name a model", catalog)
		}
		return target, s.colls[target], nil
	}
	if !searchv1.ValidPart(model) {
		return "", nil, searchv1.BadName("model", model)
	}
	names := []string{searchv1.CollectionName(catalog, model)}
	if cat, _, ok := searchv1.SplitCollection(target); aliased && ok && cat != catalog {
		names = append(names, searchv1.CollectionName(cat, model))
	}
	for _, n := range names {
		if c := s.colls[n]; c != nil {
			return n, c, nil
		}
	}
	if forQuery && aliased {
		return "", nil, apierror.BadRequest(apierror.CodeModelMismatch, "catalog %q has no vector space for model %q", catalog, model)
	}
	return "", nil, notFound("no collection %s", names[0])
}

func (s *Server) upsert(r *http.Request) (any, error) {
	var req searchv1.UpsertRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.Model == "" {
		return nil, apierror.BadRequest(apierror.CodeInvalidArgument, "model is required: it names the vector space")
	}
	if len(req.Points) > searchv1.MaxUpsertBatch {
		return nil, apierror.BadRequest(searchv1.CodeTooManyPoints, "%d points, at most %d per request", len(req.Points), searchv1.MaxUpsertBatch)
	}
	s.queries.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	name, c, err := s.resolve(r.PathValue("catalog"), req.Model, false)
	if err != nil {
		return nil, err
	}
	for _, p := range req.Points {
		if err := searchv1.CheckSKU(p.SKU); err != nil {
			return nil, err
		}
		if err := searchv1.CheckVector(p.Vector, req.Dim, name, c.dim, "point "+p.SKU); err != nil {
			return nil, err
		}
		if err := searchv1.CheckPayload(p.SKU, p.Payload); err != nil {
			return nil, err
		}
	}
	for _, p := range req.Points {
		payload := searchv1.Payload{}
		for k, v := range p.Payload {
			payload[k] = v
		}
		payload[searchv1.KeySKU] = p.SKU
		c.points[p.SKU] = searchv1.Point{SKU: p.SKU, Vector: append(searchv1.Vector(nil), p.Vector...), Payload: payload}
		c.writes[p.SKU]++
	}
	s.upserts.Add(1)
	return searchv1.UpsertResponse{Collection: name, Upserted: len(req.Points)}, nil
}

// pointRoute reads a point route's SKU and resolves its collection; s.mu is held.
func (s *Server) pointRoute(r *http.Request) (string, *collection, string, error) {
	sku := r.PathValue("sku")
	if err := searchv1.CheckSKU(sku); err != nil {
		return "", nil, "", err
	}
	name, c, err := s.resolve(r.PathValue("catalog"), r.URL.Query().Get(searchv1.ParamModel), false)
	return name, c, sku, err
}

func (s *Server) get(r *http.Request) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name, c, sku, err := s.pointRoute(r)
	if err != nil {
		return nil, err
	}
	p, ok := c.points[sku]
	if !ok {
		return nil, notFound("sku %q not found in %s", sku, name)
	}
	return p, nil
}

func (s *Server) delete(r *http.Request) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, c, sku, err := s.pointRoute(r)
	if err != nil {
		return nil, err
	}
	delete(c.points, sku)
	return nil, nil
}

func (s *Server) count(r *http.Request) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name, c, err := s.resolve(r.PathValue("catalog"), r.URL.Query().Get(searchv1.ParamModel), false)
	if err != nil {
		return nil, err
	}
	return searchv1.CountResponse{Collection: name, Count: int64(len(c.points))}, nil
}

type query struct {
	vector       []float32
	topK, offset int
	minScore     *float32
	filter       *searchv1.Filter
	exclude      string
	withVectors  bool
}

// rank scores every point by cosine, best first (ties by SKU), and pages.
func (c *collection) rank(q query) []searchv1.Hit {
	qn := norm(q.vector)
	hits := []searchv1.Hit{}
	for sku, p := range c.points {
		if sku == q.exclude || !q.filter.Match(p.Payload) {
			continue
		}
		var dot float64
		for i := range q.vector {
			dot += float64(q.vector[i]) * float64(p.Vector[i])
		}
		score := float32(dot / (qn * norm(p.Vector)))
		if q.minScore != nil && score < *q.minScore {
			continue
		}
		h := searchv1.Hit{SKU: sku, Score: score, Payload: p.Payload}
		if q.withVectors {
			h.Vector = p.Vector
		}
		hits = append(hits, h)
	}
	sort.Slice(hits, func(i, j int) bool {
		if hits[i].Score != hits[j].Score {
			return hits[i].Score > hits[j].Score
		}
		return hits[i].SKU < hits[j].SKU
	})
	if q.offset >= len(hits) {
		return []searchv1.Hit{}
	}
	hits = hits[q.offset:]
	if len(hits) > q.topK {
		hits = hits[:q.topK]
	}
	return hits
}

func norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

func (s *Server) search(r *http.Request) (any, error) {
	var req searchv1.SearchRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.Model == "" {
		return nil, apierror.BadRequest(apierror.CodeInvalidArgument, "model is required: a vector is only comparable within its model's space")
	}
	topK, err := searchv1.CheckQuery(req.TopK, req.Offset, req.MinScore, req.Filter)
	if err != nil {
		return nil, err
	}
	s.queries.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	name, c, err := s.resolve(r.PathValue("catalog"), req.Model, true)
	if err != nil {
		return nil, err
	}
	if err := searchv1.CheckVector(req.Vector, req.Dim, name, c.dim, "query"); err != nil {
		return nil, err
	}
	hits := c.rank(query{vector: req.Vector, topK: topK, offset: req.Offset, minScore: req.MinScore, filter: req.Filter, withVectors: req.WithVectors})
	return searchv1.SearchResponse{Collection: name, Model: c.model, Results: hits}, nil
}

func (s *Server) recommend(r *http.Request) (any, error) {
	var req searchv1.RecommendRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if err := searchv1.CheckSKU(req.SKU); err != nil {
		return nil, err
	}
	topK, err := searchv1.CheckQuery(req.TopK, req.Offset, req.MinScore, req.Filter)
	if err != nil {
		return nil, err
	}
	s.queries.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	name, c, err := s.resolve(r.PathValue("catalog"), req.Model, true)
	if err != nil {
		return nil, err
	}
	p, ok := c.points[req.SKU]
	if !ok {
		return nil, notFound("sku %q not found in %s", req.SKU, name)
	}
	hits := c.rank(query{vector: p.Vector, topK: topK, offset: req.Offset, minScore: req.MinScore, filter: req.Filter, exclude: req.SKU})
	return searchv1.SearchResponse{Collection: name, Model: c.model, Results: hits}, nil
}

func (s *Server) duplicates(r *http.Request) (any, error) {
	var req searchv1.DuplicateRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.Model == "" {
		return nil, apierror.BadRequest(apierror.CodeInvalidArgument, "model is required")
	}
	minScore, topK := req.Limits()
	topK, err := searchv1.CheckQuery(topK, 0, &minScore, nil)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	name, c, err := s.resolve(r.PathValue("catalog"), req.Model, true)
	if err != nil {
		return nil, err
	}
	if err := searchv1.CheckVector(req.Vector, req.Dim, name, c.dim, "query"); err != nil {
		return nil, err
	}
	hits := c.rank(query{vector: req.Vector, topK: topK, minScore: &minScore, exclude: req.ExcludeSKU})
	return searchv1.DuplicateResponse{Collection: name, Model: c.model, Duplicate: len(hits) > 0, MinScore: minScore, Matches: hits}, nil
}

func (s *Server) aliasInfo(alias, coll string) searchv1.AliasInfo {
	_, model, _ := searchv1.SplitCollection(coll)
	return searchv1.AliasInfo{Alias: alias, Collection: coll, Model: model}
}

func (s *Server) listAliases(*http.Request) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := searchv1.AliasList{Aliases: []searchv1.AliasInfo{}}
	for a, c := range s.aliases {
		out.Aliases = append(out.Aliases, s.aliasInfo(a, c))
	}
	sort.Slice(out.Aliases, func(i, j int) bool { return out.Aliases[i].Alias < out.Aliases[j].Alias })
	return out, nil
}

func (s *Server) alias(r *http.Request) (any, error) {
	alias := r.PathValue("alias")
	if !searchv1.ValidName(alias) {
		return nil, searchv1.BadName("alias", alias)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.aliases[alias]
	if !ok {
		return nil, notFound("alias %q not found", alias)
	}
	return s.aliasInfo(alias, c), nil
}

func (s *Server) switchAlias(r *http.Request) (any, error) {
	alias := r.PathValue("alias")
	if !searchv1.ValidName(alias) {
		return nil, searchv1.BadName("alias", alias)
	}
	var req searchv1.SwitchAliasRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if _, _, ok := searchv1.SplitCollection(req.Collection); !ok {
		return nil, apierror.BadRequest(searchv1.CodeInvalidName, "collection %q is not <catalog>__<model>", req.Collection)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.colls[req.Collection] == nil {
		return nil, notFound("collection %q not found", req.Collection)
	}
	if s.colls[alias] != nil {
		return nil, apierror.New(http.StatusConflict, apierror.CodeConflict, "alias %q would shadow a collection", alias)
	}
	s.aliases[alias] = req.Collection
	return s.aliasInfo(alias, req.Collection), nil
}

func (s *Server) deleteAlias(r *http.Request) (any, error) {
	alias := r.PathValue("alias")
	if !searchv1.ValidName(alias) {
		return nil, searchv1.BadName("alias", alias)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.aliases[alias]; !ok {
		return nil, notFound("alias %q not found", alias)
	}
	delete(s.aliases, alias)
	return nil, nil
}
