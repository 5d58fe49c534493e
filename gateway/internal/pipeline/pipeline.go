// Package pipeline is what the gateway does with the downstream services:
// a query image goes preprocess (with the model's spec) -> embed -> search;
// "more like this" goes straight to search; a product write goes
// preprocess -> embed -> ensure collection and alias -> upsert (wait).
//
// It talks to the services only through the shared/contract clients. Errors
// it returns are *apierror.Error values: a downstream 4xx becomes the
// gateway's own code and message (refusals.go: a corrupt image stays
// "corrupt_image", but no downstream message reaches a shopper), a
// downstream that is down or failing becomes 503 "unavailable", a deadline
// 504.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/bufpool"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"
)

// Codes of refusals made by the pipeline itself.
const (
	CodeUnknownModel    = "unknown_model"
	CodeDownstreamError = "downstream_error"
)

// Backend runs queries and product writes. *Pipeline is one; the canary
// router, which splits traffic over several, is another.
type Backend interface {
	Models(ctx context.Context) ([]embedv1.ModelSpec, error)
	SearchImage(ctx context.Context, image []byte, q Query) (Result, error)
	MoreLikeThis(ctx context.Context, sku string, q Query) (Result, error)
	IndexProduct(ctx context.Context, sku string, image []byte, payload searchv1.Payload, model string) (Written, error)
	UpdateMetadata(ctx context.Context, sku string, payload searchv1.Payload, model string) (Written, error)
	Delete(ctx context.Context, sku, model string) error
	Get(ctx context.Context, sku, model string) (searchv1.Point, error)
}

var _ Backend = (*Pipeline)(nil)

// Pipeline runs queries and product writes against the downstreams.
type Pipeline struct {
	Preprocess *preprocessv1.Client
	Embed      *embedv1.Client
	Search     *searchv1.Client
	// Catalog is the catalog (alias) name, "products".
	Catalog string
	// ModelsTTL is how long the embed model list is cached (30 s).
	ModelsTTL time.Duration

	models  modelCache
	ensured sync.Map // collection name -> struct{}
	// tensors recycles the preprocess answers: a 600 KB float32 tensor (150 KB as uint8) per query
	// allocated and dropped cost the gateway about a fifth of its CPU in
	// zeroing, page faults and collection (profiled under make bench-e2e).
	tensors bufpool.Pool
	// floatUntil (unix ns) is when to try uint8 tensors again after a
	// preprocess refused them (one from before it made them).
	floatUntil atomic.Int64
}

// floatRetry is how long the pipeline asks preprocess for float32 tensors
// after it refused uint8 ones, before it tries again (a rollout may have
// replaced it meanwhile).
const floatRetry = time.Minute

// Query is a nearest-neighbour query.
type Query struct {
	// Model is the model (vector space) to use; empty means embed's default.
	Model    string
	TopK     int
	MinScore *float32
	Filter   *searchv1.Filter
	// ImageHold, when set, guards the query image's pooled buffer: it is
	// retained by whatever may read the image after the call that got it
	// returns (the transport sending it, a canary shadow query).
	ImageHold bufpool.Holder
}

// Result is a query's answer, best first.
type Result struct {
	Model string
	Hits  []searchv1.Hit
}

// hopErr turns a downstream error into the error the gateway answers with.
func hopErr(hop string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	if e, ok := apierror.As(err); ok {
		switch {
		case e.Status < 500:
			return refusalErr(hop, e, err)
		case e.Status == http.StatusGatewayTimeout || e.Code == apierror.CodeDeadlineExceeded:
			return apierror.Wrap(err, http.StatusGatewayTimeout, apierror.CodeDeadlineExceeded, "%s did not answer in time", hop)
		case e.Status == http.StatusServiceUnavailable:
			return apierror.Wrap(err, http.StatusServiceUnavailable, apierror.CodeUnavailable, "%s is unavailable", hop).WithRetryAfter(max(e.RetryAfter, 1))
		default:
			return apierror.Wrap(err, http.StatusBadGateway, CodeDownstreamError, "%s failed", hop)
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return apierror.Wrap(err, http.StatusGatewayTimeout, apierror.CodeDeadlineExceeded, "%s did not answer in time", hop)
	}
	return apierror.Wrap(err, http.StatusBadGateway, apierror.CodeDownstreamProtocol, "%s answered something unexpected", hop)
}

// modelCache keeps embed's model list for a while; a stale list is used
// when embed cannot be asked.
type modelCache struct {
	mu      sync.Mutex
	list    []embedv1.ModelSpec
	fetched time.Time
}

// Models returns embed's models, cached for ModelsTTL.
func (p *Pipeline) Models(ctx context.Context) ([]embedv1.ModelSpec, error) {
	return p.models.get(ctx, p, false)
}

func (c *modelCache) get(ctx context.Context, p *Pipeline, force bool) ([]embedv1.ModelSpec, error) {
	ttl := p.ModelsTTL
	if ttl <= 0 {
		ttl = 30 * time.Second
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.list != nil && !force && time.Since(c.fetched) < ttl {
		return c.list, nil
	}
	start := time.Now()
	list, err := p.Embed.Models(ctx)
	track(ctx, "models", start)
	if err != nil {
		if c.list != nil {
			return c.list, nil
		}
		return nil, hopErr("embed", err)
	}
	if len(list) == 0 {
		return nil, apierror.New(http.StatusServiceUnavailable, apierror.CodeUnavailable, "embed serves no models")
	}
	c.list, c.fetched = list, time.Now()
	return list, nil
}

// Model returns the spec of id (empty: the default model). An id embed
// does not serve is a 400 unknown_model.
func (p *Pipeline) Model(ctx context.Context, id string) (embedv1.ModelSpec, error) {
	for force := range []bool{false, true} {
		list, err := p.models.get(ctx, p, force == 1)
		if err != nil {
			return embedv1.ModelSpec{}, err
		}
		if m, ok := pickModel(list, id); ok {
			return m, nil
		}
		if id == "" {
			break
		}
	}
	return embedv1.ModelSpec{}, apierror.BadRequest(CodeUnknownModel, "model %q is not served", id)
}

func pickModel(list []embedv1.ModelSpec, id string) (embedv1.ModelSpec, bool) {
	if id == "" {
		for _, m := range list {
			if m.Default {
				return m, true
			}
		}
		return list[0], len(list) > 0
	}
	for _, m := range list {
		if m.ID == id {
			return m, true
		}
	}
	return embedv1.ModelSpec{}, false
}

// EmbedImage turns image bytes into one embedding with model (empty: default),
// preprocessing with that model's spec.
func (p *Pipeline) EmbedImage(ctx context.Context, image []byte, model string) (embedv1.Embeddings, error) {
	return p.embedImage(ctx, image, nil, model)
}

func (p *Pipeline) embedImage(ctx context.Context, image []byte, imageHold bufpool.Holder, model string) (embedv1.Embeddings, error) {
	spec, err := p.Model(ctx, model)
	if err != nil {
		return embedv1.Embeddings{}, err
	}
	start := time.Now()
	t, buf, err := p.preprocess(ctx, image, imageHold, spec)
	track(ctx, "preprocess", start)
	if err != nil {
		return embedv1.Embeddings{}, hopErr("preprocess", err)
	}
	// The tensor goes on from its pooled buffer, which returns to the pool
	// once this call and the transport sending it are both done with it.
	defer buf.Release()
	start = time.Now()
	emb, err := p.Embed.EmbedHeld(ctx, t, buf, spec.ID)
	track(ctx, "embed", start)
	if err != nil {
		return embedv1.Embeddings{}, hopErr("embed", err)
	}
	if len(emb.Vectors) != 1 {
		return embedv1.Embeddings{}, apierror.New(http.StatusBadGateway, apierror.CodeDownstreamProtocol, "embed returned %d vectors for one image", len(emb.Vectors))
	}
	return emb, nil
}

// preprocess asks for the model's wire spec: uint8 levels when embed takes
// them (a quarter of the bytes on both hops), else the model's own dtype.
// A preprocess that refuses the uint8 dtype (older than it) gets the
// model's spec instead, for floatRetry.
func (p *Pipeline) preprocess(ctx context.Context, image []byte, imageHold bufpool.Holder, model embedv1.ModelSpec) (tensorv1.Tensor, *bufpool.Lease, error) {
	spec := model.WireSpec()
	if spec.DType != model.Preprocess.DType && time.Now().UnixNano() < p.floatUntil.Load() {
		spec = model.Preprocess
	}
	t, _, buf, err := p.Preprocess.PreprocessPooled(ctx, image, imageHold, &spec, &p.tensors)
	if err != nil && spec.DType != model.Preprocess.DType && preprocessv1.RefusesDType(err) {
		p.floatUntil.Store(time.Now().Add(floatRetry).UnixNano())
		t, _, buf, err = p.Preprocess.PreprocessPooled(ctx, image, imageHold, &model.Preprocess, &p.tensors)
	}
	return t, buf, err
}

// SearchImage finds the products nearest to image.
func (p *Pipeline) SearchImage(ctx context.Context, image []byte, q Query) (Result, error) {
	emb, err := p.embedImage(ctx, image, q.ImageHold, q.Model)
	if err != nil {
		return Result{}, err
	}
	start := time.Now()
	resp, err := p.Search.Search(ctx, p.Catalog, searchv1.SearchRequest{
		Model: emb.ModelID, Dim: emb.Dim, Vector: emb.Vectors[0],
		TopK: q.TopK, MinScore: q.MinScore, Filter: q.Filter,
	})
	track(ctx, "search", start)
	if err != nil {
		return Result{}, hopErr("search", err)
	}
	return Result{Model: firstNonEmpty(resp.Model, emb.ModelID), Hits: resp.Results}, nil
}

// MoreLikeThis finds the products nearest to a stored product.
func (p *Pipeline) MoreLikeThis(ctx context.Context, sku string, q Query) (Result, error) {
	start := time.Now()
	resp, err := p.Search.Recommend(ctx, p.Catalog, searchv1.RecommendRequest{
		SKU: sku, Model: q.Model, TopK: q.TopK, MinScore: q.MinScore, Filter: q.Filter,
	})
	track(ctx, "search", start)
	if err != nil {
		return Result{}, hopErr("search", err)
	}
	return Result{Model: resp.Model, Hits: resp.Results}, nil
}

// Written describes a product write.
type Written struct {
	SKU        string `json:"sku"`
	Model      string `json:"model"`
	Collection string `json:"collection"`
}

// IndexProduct embeds image and upserts the product, waiting until it is
// durable. The collection (and the catalog alias, if missing) is created
// first when this process has not seen it yet.
func (p *Pipeline) IndexProduct(ctx context.Context, sku string, image []byte, payload searchv1.Payload, model string) (Written, error) {
	emb, err := p.EmbedImage(ctx, image, model)
	if err != nil {
		return Written{}, err
	}
	return p.upsert(ctx, searchv1.Point{SKU: sku, Vector: emb.Vectors[0], Payload: payload}, emb.ModelID, emb.Dim)
}

// UpdateMetadata replaces a stored product's payload, keeping its vector.
func (p *Pipeline) UpdateMetadata(ctx context.Context, sku string, payload searchv1.Payload, model string) (Written, error) {
	pt, err := p.Get(ctx, sku, model)
	if err != nil {
		return Written{}, err
	}
	if len(pt.Vector) == 0 {
		return Written{}, apierror.New(http.StatusBadGateway, apierror.CodeDownstreamProtocol, "search returned no vector for %q", sku)
	}
	spec, err := p.Model(ctx, model)
	if err != nil {
		return Written{}, err
	}
	return p.upsert(ctx, searchv1.Point{SKU: sku, Vector: pt.Vector, Payload: payload}, spec.ID, len(pt.Vector))
}

func (p *Pipeline) upsert(ctx context.Context, pt searchv1.Point, model string, dim int) (Written, error) {
	coll := searchv1.CollectionName(p.Catalog, model)
	start := time.Now()
	defer track(ctx, "search", start)
	if _, ok := p.ensured.Load(coll); !ok {
		if _, err := p.Search.CreateCollection(ctx, searchv1.CreateCollectionRequest{
			Catalog: p.Catalog, Model: model, Dim: dim, MakeAlias: true,
		}); err != nil {
			return Written{}, hopErr("search", err)
		}
		p.ensured.Store(coll, struct{}{})
	}
	resp, err := p.Search.Upsert(ctx, p.Catalog, searchv1.UpsertRequest{Model: model, Dim: dim, Points: []searchv1.Point{pt}})
	if err != nil {
		if apierror.CodeOf(err) == apierror.CodeNotFound {
			p.ensured.Delete(coll) // dropped behind our back: create it next time
		}
		return Written{}, hopErr("search", err)
	}
	return Written{SKU: pt.SKU, Model: model, Collection: firstNonEmpty(resp.Collection, coll)}, nil
}

// Get returns a stored product (payload and vector) from model's space
// (empty: the catalog alias's).
func (p *Pipeline) Get(ctx context.Context, sku, model string) (searchv1.Point, error) {
	start := time.Now()
	pt, err := p.Search.Get(ctx, p.Catalog, sku, model)
	track(ctx, "search", start)
	return pt, hopErr("search", err)
}

// Delete removes a product; deleting an absent one succeeds.
func (p *Pipeline) Delete(ctx context.Context, sku, model string) error {
	start := time.Now()
	err := p.Search.Delete(ctx, p.Catalog, sku, model)
	track(ctx, "search", start)
	return hopErr("search", err)
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// String describes the pipeline for logs.
func (p *Pipeline) String() string {
	return fmt.Sprintf("pipeline(catalog=%s)", p.Catalog)
}
