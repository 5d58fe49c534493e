package canary

import (
	"context"
	"hash/fnv"
	"net/http"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/lookalike-dev/lookalike/gateway/internal/pipeline"
	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
)

// world is an in-memory search: collections and aliases, shared by the
// fake spaces and the fake backends.
type world struct {
	mu        sync.Mutex
	aliases   map[string]string
	colls     map[string]*fakeColl
	failWrite map[string]bool // model -> writes fail with 503
}

type fakeColl struct {
	model  string
	dim    int
	points map[string]searchv1.Payload
}

func newWorld() *world {
	return &world{aliases: map[string]string{}, colls: map[string]*fakeColl{}, failWrite: map[string]bool{}}
}

// seed creates model's collection with skus (and the catalog alias if none).
func (w *world) seed(model string, dim int, skus ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	name := searchv1.CollectionName("products", model)
	c := w.colls[name]
	if c == nil {
		c = &fakeColl{model: model, dim: dim, points: map[string]searchv1.Payload{}}
		w.colls[name] = c
	}
	for _, s := range skus {
		c.points[s] = searchv1.Payload{"sku": s}
	}
	if _, ok := w.aliases["products"]; !ok {
		w.aliases["products"] = name
	}
}

func (w *world) has(model, sku string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.colls[searchv1.CollectionName("products", model)]
	if c == nil {
		return false
	}
	_, ok := c.points[sku]
	return ok
}

func (w *world) count(model string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c := w.colls[searchv1.CollectionName("products", model)]; c != nil {
		return len(c.points)
	}
	return -1
}

// fakeSpaces implements Spaces on a world.
type fakeSpaces struct{ w *world }

func (s fakeSpaces) Aliases(context.Context) ([]searchv1.AliasInfo, error) {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	var out []searchv1.AliasInfo
	for a, c := range s.w.aliases {
		out = append(out, searchv1.AliasInfo{Alias: a, Collection: c, Model: s.w.colls[c].model})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Alias < out[j].Alias })
	return out, nil
}

func (s fakeSpaces) Collections(context.Context) ([]searchv1.CollectionInfo, error) {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	var out []searchv1.CollectionInfo
	for n, c := range s.w.colls {
		out = append(out, searchv1.CollectionInfo{Name: n, Catalog: "products", Model: c.model, Dim: c.dim, Count: int64(len(c.points))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (s fakeSpaces) CreateCollection(_ context.Context, r searchv1.CreateCollectionRequest) (searchv1.CollectionInfo, error) {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	name := searchv1.CollectionName(r.Catalog, r.Model)
	if c := s.w.colls[name]; c != nil && c.dim != r.Dim {
		return searchv1.CollectionInfo{}, apierror.New(http.StatusConflict, apierror.CodeDimensionMismatch, "dim")
	}
	if s.w.colls[name] == nil {
		s.w.colls[name] = &fakeColl{model: r.Model, dim: r.Dim, points: map[string]searchv1.Payload{}}
	}
	return searchv1.CollectionInfo{Name: name, Catalog: r.Catalog, Model: r.Model, Dim: r.Dim}, nil
}

func (s fakeSpaces) SwitchAlias(_ context.Context, alias, coll string) (searchv1.AliasInfo, error) {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	if s.w.colls[coll] == nil {
		return searchv1.AliasInfo{}, apierror.New(http.StatusNotFound, apierror.CodeNotFound, "no collection %s", coll)
	}
	s.w.aliases[alias] = coll
	return searchv1.AliasInfo{Alias: alias, Collection: coll}, nil
}

func (s fakeSpaces) DeleteAlias(_ context.Context, alias string) error {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	delete(s.w.aliases, alias)
	return nil
}

func (s fakeSpaces) DropCollection(_ context.Context, name string) error {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	for _, c := range s.w.aliases {
		if c == name {
			return apierror.New(http.StatusConflict, apierror.CodeConflict, "aliased")
		}
	}
	delete(s.w.colls, name)
	return nil
}

// fakeBackend is an embed deployment serving some models in front of the
// world. Each model ranks products by its own hash of (image, sku): two
// models give different but overlapping answers, like two vector spaces.
type fakeBackend struct {
	w        *world
	models   []embedv1.ModelSpec
	searches atomic.Int32
}

func spec(id string, dim int, def bool) embedv1.ModelSpec {
	return embedv1.ModelSpec{ID: id, Dim: dim, Default: def, Ready: true}
}

func (b *fakeBackend) Models(context.Context) ([]embedv1.ModelSpec, error) { return b.models, nil }

func (b *fakeBackend) model(m string) (string, error) {
	for _, s := range b.models {
		if m == s.ID || (m == "" && s.Default) {
			return s.ID, nil
		}
	}
	return "", apierror.BadRequest("unknown_model", "model %q is not served", m)
}

func score(model, query, sku string) float32 {
	h := fnv.New32a()
	h.Write([]byte(model + "|" + query + "|" + sku))
	return float32(h.Sum32()%10000) / 10000
}

func (b *fakeBackend) rank(model, query, skip string, topK int) (pipeline.Result, error) {
	b.searches.Add(1)
	b.w.mu.Lock()
	defer b.w.mu.Unlock()
	c := b.w.colls[searchv1.CollectionName("products", model)]
	if c == nil {
		return pipeline.Result{}, apierror.BadRequest(apierror.CodeModelMismatch, "no space for %q", model)
	}
	var hits []searchv1.Hit
	for sku := range c.points {
		if sku != skip {
			hits = append(hits, searchv1.Hit{SKU: sku, Score: score(model, query, sku)})
		}
	}
	slices.SortFunc(hits, func(x, y searchv1.Hit) int {
		if x.Score != y.Score {
			if x.Score > y.Score {
				return -1
			}
			return 1
		}
		if x.SKU < y.SKU {
			return -1
		}
		return 1
	})
	if topK <= 0 {
		topK = 10
	}
	return pipeline.Result{Model: model, Hits: hits[:min(topK, len(hits))]}, nil
}

func (b *fakeBackend) SearchImage(_ context.Context, image []byte, q pipeline.Query) (pipeline.Result, error) {
	m, err := b.model(q.Model)
	if err != nil {
		return pipeline.Result{}, err
	}
	return b.rank(m, string(image), "", q.TopK)
}

func (b *fakeBackend) MoreLikeThis(_ context.Context, sku string, q pipeline.Query) (pipeline.Result, error) {
	m, err := b.model(q.Model)
	if err != nil {
		return pipeline.Result{}, err
	}
	return b.rank(m, "sku:"+sku, sku, q.TopK)
}

func (b *fakeBackend) IndexProduct(_ context.Context, sku string, _ []byte, payload searchv1.Payload, model string) (pipeline.Written, error) {
	m, err := b.model(model)
	if err != nil {
		return pipeline.Written{}, err
	}
	b.w.mu.Lock()
	defer b.w.mu.Unlock()
	if b.w.failWrite[m] {
		return pipeline.Written{}, apierror.New(http.StatusServiceUnavailable, apierror.CodeUnavailable, "search down")
	}
	name := searchv1.CollectionName("products", m)
	if b.w.colls[name] == nil {
		b.w.colls[name] = &fakeColl{model: m, dim: 8, points: map[string]searchv1.Payload{}}
	}
	if _, ok := b.w.aliases["products"]; !ok {
		b.w.aliases["products"] = name
	}
	b.w.colls[name].points[sku] = payload
	return pipeline.Written{SKU: sku, Model: m, Collection: name}, nil
}

func (b *fakeBackend) UpdateMetadata(_ context.Context, sku string, payload searchv1.Payload, model string) (pipeline.Written, error) {
	m, err := b.model(model)
	if err != nil {
		return pipeline.Written{}, err
	}
	b.w.mu.Lock()
	defer b.w.mu.Unlock()
	name := searchv1.CollectionName("products", m)
	c := b.w.colls[name]
	if c == nil || c.points[sku] == nil {
		return pipeline.Written{}, apierror.New(http.StatusNotFound, apierror.CodeNotFound, "no product %q", sku)
	}
	c.points[sku] = payload
	return pipeline.Written{SKU: sku, Model: m, Collection: name}, nil
}

func (b *fakeBackend) Delete(_ context.Context, sku, model string) error {
	m, err := b.model(model)
	if err != nil {
		return err
	}
	b.w.mu.Lock()
	defer b.w.mu.Unlock()
	if c := b.w.colls[searchv1.CollectionName("products", m)]; c != nil {
		delete(c.points, sku)
	}
	return nil
}

func (b *fakeBackend) Get(_ context.Context, sku, model string) (searchv1.Point, error) {
	b.w.mu.Lock()
	defer b.w.mu.Unlock()
	name := b.w.aliases["products"]
	if model != "" {
		name = searchv1.CollectionName("products", model)
	}
	c := b.w.colls[name]
	if c == nil || c.points[sku] == nil {
		return searchv1.Point{}, apierror.New(http.StatusNotFound, apierror.CodeNotFound, "no product %q", sku)
	}
	return searchv1.Point{SKU: sku, Payload: c.points[sku], Vector: make([]float32, c.dim)}, nil
}
