// Package store defines the vector store the search service runs on and the
// errors every backend reports. Two backends implement it: the embedded
// on-disk index (package embedded) and Qdrant (package qdrantstore). The
// behaviour both must share is pinned by the conformance suite in storetest.
package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
)

// PointNamespace is the fixed UUIDv5 namespace of point ids. Never change it:
// every stored point id is derived from it.
var PointNamespace = uuid.MustParse("6f1d3c2a-5b7e-4f0a-9c1d-2e3f4a5b6c7d")

// PointID is the deterministic point id of a SKU: UUIDv5(PointNamespace, sku).
func PointID(sku string) string { return uuid.NewSHA1(PointNamespace, []byte(sku)).String() }

// Well-known payload keys. Category and brand are keyword indexes, price a
// float index and in_stock a bool index, in every backend.
const (
	KeySKU      = searchv1.KeySKU
	KeyCategory = searchv1.KeyCategory
	KeyBrand    = searchv1.KeyBrand
	KeyPrice    = searchv1.KeyPrice
	KeyInStock  = searchv1.KeyInStock
)

// Collection describes a physical collection.
type Collection struct {
	Name    string
	Catalog string
	Model   string
	Dim     int
	Count   int64
}

// Point is a stored product: its SKU, vector and payload.
type Point struct {
	SKU     string
	Vector  []float32
	Payload map[string]any
}

// Query is a nearest-neighbour query against one collection.
type Query struct {
	Vector   []float32
	TopK     int
	Offset   int
	MinScore *float32
	Filter   *searchv1.Filter
	// ExcludeSKU leaves one SKU out of the results ("more like this").
	ExcludeSKU string
	// WithVectors returns stored vectors.
	WithVectors bool
}

// Hit is a scored result, best first. Score is the cosine similarity.
type Hit struct {
	SKU     string
	Score   float32
	Payload map[string]any
	Vector  []float32
}

// Store is a vector store of catalog collections and aliases. Every method is
// safe for concurrent use. A nil error from Upsert or Delete means the change
// is durable and visible to the next read.
type Store interface {
	// Backend names the implementation ("embedded", "qdrant").
	Backend() string
	// Ping reports whether the backend is reachable.
	Ping(ctx context.Context) error
	// CreateCollection creates a catalog's collection in a model's space with
	// its payload indexes. It is idempotent when dim matches, ErrConflict otherwise.
	CreateCollection(ctx context.Context, catalog, model string, dim int) (Collection, error)
	// DropCollection deletes a collection; ErrConflict while an alias points at it.
	DropCollection(ctx context.Context, name string) error
	// Collection describes one collection (ErrNotFound when absent).
	Collection(ctx context.Context, name string) (Collection, error)
	// Collections lists collections sorted by name.
	Collections(ctx context.Context) ([]Collection, error)
	// Upsert writes points (idempotent by SKU). Vectors must have the collection's dim.
	Upsert(ctx context.Context, collection string, points []Point) error
	// Get returns one point with vector and payload (ErrNotFound when absent).
	Get(ctx context.Context, collection, sku string) (Point, error)
	// Delete removes a SKU; deleting an absent SKU succeeds.
	Delete(ctx context.Context, collection, sku string) error
	// Count returns the number of points.
	Count(ctx context.Context, collection string) (int64, error)
	// Search returns the best hits, best first.
	Search(ctx context.Context, collection string, q Query) ([]Hit, error)
	// Recommend searches with the stored vector of sku, leaving sku out
	// (q.Vector is ignored). ErrNotFound when sku is absent.
	Recommend(ctx context.Context, collection, sku string, q Query) ([]Hit, error)
	// Alias returns the collection an alias points at (ErrNotFound when absent).
	Alias(ctx context.Context, alias string) (string, error)
	// Aliases lists alias -> collection.
	Aliases(ctx context.Context) (map[string]string, error)
	// SwitchAlias points alias at collection atomically, creating it if needed.
	SwitchAlias(ctx context.Context, alias, collection string) error
	// DeleteAlias removes an alias (ErrNotFound when absent).
	DeleteAlias(ctx context.Context, alias string) error
	// Close releases the store; the embedded backend snapshots first.
	Close() error
}

// Kind classifies a store error.
type Kind int

// Error kinds.
const (
	KindNotFound Kind = iota + 1
	KindConflict
	KindInvalid
	KindUnavailable
)

// Error is a classified store error.
type Error struct {
	Kind Kind
	// Code, when set, is the machine code the API answers with instead of
	// the kind's own.
	Code string
	Msg  string
	Err  error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrNotFound) and friends match by kind.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Msg == "" && t.Kind == e.Kind
}

// Sentinels for errors.Is.
var (
	ErrNotFound    = &Error{Kind: KindNotFound}
	ErrConflict    = &Error{Kind: KindConflict}
	ErrInvalid     = &Error{Kind: KindInvalid}
	ErrUnavailable = &Error{Kind: KindUnavailable}
)

// NotFound builds a KindNotFound error.
func NotFound(format string, args ...any) error {
	return &Error{Kind: KindNotFound, Msg: fmt.Sprintf(format, args...)}
}

// Conflict builds a KindConflict error.
func Conflict(format string, args ...any) error {
	return &Error{Kind: KindConflict, Msg: fmt.Sprintf(format, args...)}
}

// Invalid builds a KindInvalid error.
func Invalid(format string, args ...any) error {
	return &Error{Kind: KindInvalid, Msg: fmt.Sprintf(format, args...)}
}

// Unavailable wraps a backend failure.
func Unavailable(err error, format string, args ...any) error {
	return &Error{Kind: KindUnavailable, Msg: fmt.Sprintf(format, args...), Err: err}
}

// StorageFailed is the KindUnavailable error of a store that refuses writes
// after its disk failed (code storage_failed).
func StorageFailed(err error, format string, args ...any) error {
	return &Error{Kind: KindUnavailable, Code: searchv1.CodeStorageFailed, Msg: fmt.Sprintf(format, args...), Err: err}
}

// KindOf returns the kind of err, 0 when it carries none.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

// ValidPart checks a catalog or model name (searchv1.ValidPart).
func ValidPart(s string) bool { return searchv1.ValidPart(s) }

// SplitCollection splits "catalog__model" into its parts.
func SplitCollection(name string) (catalog, model string, ok bool) {
	return searchv1.SplitCollection(name)
}

// Number reads a JSON number payload value.
func Number(v any) (float64, bool) { return searchv1.Number(v) }
