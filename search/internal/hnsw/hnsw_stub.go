//go:build !cgo || nohnswlib

package hnsw

import "errors"

// Available reports whether hnswlib is compiled in.
const Available = false

// ErrUnavailable is returned by New and Load in builds without hnswlib.
var ErrUnavailable = errors.New("hnswlib not compiled in (CGO_ENABLED=0 or -tags nohnswlib)")

// Params are the graph parameters.
type Params struct {
	M, EfConstruction, Ef, Seed int
}

// Index is absent in this build.
type Index struct{}

// New fails: hnswlib is not compiled in.
func New(dim, capacity int, p Params) (*Index, error) { return nil, ErrUnavailable }

// Load fails: hnswlib is not compiled in.
func Load(path string, dim int, ef int) (*Index, error) { return nil, ErrUnavailable }

// Save fails.
func (ix *Index) Save(path string) error { return ErrUnavailable }

// Add fails.
func (ix *Index) Add(vecs []float32, labels []uint64, threads int) error { return ErrUnavailable }

// MarkDeleted fails.
func (ix *Index) MarkDeleted(label uint64) error { return ErrUnavailable }

// SetEf does nothing.
func (ix *Index) SetEf(ef int) {}

// Search fails.
func (ix *Index) Search(q []float32, k int) ([]uint64, []float32, error) {
	return nil, nil, ErrUnavailable
}

// Len is 0.
func (ix *Index) Len() int { return 0 }

// Close does nothing.
func (ix *Index) Close() {}
