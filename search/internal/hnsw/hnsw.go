//go:build cgo && !nohnswlib

// Package hnsw wraps hnswlib (Debian libhnswlib-dev, header-only C++) through
// cgo: an HNSW graph over inner-product space for L2-normalised vectors, so a
// distance d means cosine 1-d. It is the only cgo package of the search
// service; build with CGO_ENABLED=0 or -tags nohnswlib to leave it out
// (Available is then false and New fails).
package hnsw

/*
#cgo CXXFLAGS: -std=c++11 -O3 -DNDEBUG
#cgo amd64 CXXFLAGS: -mavx
#cgo LDFLAGS: -lstdc++ -lpthread
#include <stdlib.h>
#include "hnsw.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"
)

// Available reports whether hnswlib is compiled in.
const Available = true

// Params are the graph parameters.
type Params struct {
	M              int // links per node (16)
	EfConstruction int // build beam (200)
	Ef             int // query beam (64)
	Seed           int
}

// Index is an HNSW graph keyed by uint64 labels. It is not safe for
// concurrent use on its own: callers serialise Add/MarkDeleted/Save against
// Search (concurrent Searches are safe).
type Index struct {
	h   C.hnsw_index
	dim int
}

func cErr(what string, e *C.char) error {
	if e == nil {
		return errors.New(what + ": hnswlib failed")
	}
	defer C.free(unsafe.Pointer(e))
	return fmt.Errorf("%s: %s", what, C.GoString(e))
}

// New makes an empty index with room for capacity points (it grows).
func New(dim, capacity int, p Params) (*Index, error) {
	if capacity < 16 {
		capacity = 16
	}
	var h C.hnsw_index
	var e *C.char
	if C.hnsw_new(C.int(dim), C.size_t(capacity), C.int(p.M), C.int(p.EfConstruction), C.size_t(p.Seed), &h, &e) != 0 {
		return nil, cErr("creating hnsw index", e)
	}
	ix := &Index{h: h, dim: dim}
	ix.SetEf(p.Ef)
	return ix, nil
}

// Load reads an index saved by Save.
func Load(path string, dim int, ef int) (*Index, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var h C.hnsw_index
	var e *C.char
	if C.hnsw_load(cpath, C.int(dim), 0, &h, &e) != 0 {
		return nil, cErr("loading hnsw index "+path, e)
	}
	ix := &Index{h: h, dim: dim}
	ix.SetEf(ef)
	return ix, nil
}

// Save writes the index to path.
func (ix *Index) Save(path string) error {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var e *C.char
	if C.hnsw_save(ix.h, cpath, &e) != 0 {
		return cErr("saving hnsw index "+path, e)
	}
	return nil
}

// Add inserts or replaces n = len(labels) vectors stored back to back in vecs
// (an existing label is updated, a deleted one revived), using threads workers.
func (ix *Index) Add(vecs []float32, labels []uint64, threads int) error {
	if len(labels) == 0 {
		return nil
	}
	if len(vecs) != len(labels)*ix.dim {
		return fmt.Errorf("hnsw add: %d floats for %d labels of dim %d", len(vecs), len(labels), ix.dim)
	}
	cl := make([]C.size_t, len(labels))
	for i, l := range labels {
		cl[i] = C.size_t(l)
	}
	var pin runtime.Pinner
	pin.Pin(&vecs[0])
	pin.Pin(&cl[0])
	defer pin.Unpin()
	var e *C.char
	if C.hnsw_add_batch(ix.h, (*C.float)(unsafe.Pointer(&vecs[0])), &cl[0], C.size_t(len(labels)), C.int(threads), &e) != 0 {
		return cErr("hnsw add", e)
	}
	return nil
}

// MarkDeleted hides a label from searches.
func (ix *Index) MarkDeleted(label uint64) error {
	var e *C.char
	if C.hnsw_mark_deleted(ix.h, C.size_t(label), &e) != 0 {
		return cErr("hnsw delete", e)
	}
	return nil
}

// SetEf sets the query beam width (at least k is used).
func (ix *Index) SetEf(ef int) {
	if ef < 1 {
		ef = 64
	}
	C.hnsw_set_ef(ix.h, C.size_t(ef))
}

// Search returns up to k labels, nearest first, with their distances
// (1 - inner product).
func (ix *Index) Search(q []float32, k int) ([]uint64, []float32, error) {
	if len(q) != ix.dim {
		return nil, nil, fmt.Errorf("hnsw search: query of dim %d, index dim %d", len(q), ix.dim)
	}
	if k <= 0 {
		return nil, nil, nil
	}
	labels := make([]C.size_t, k)
	dists := make([]float32, k)
	var found C.size_t
	var e *C.char
	var pin runtime.Pinner
	pin.Pin(&q[0])
	pin.Pin(&labels[0])
	pin.Pin(&dists[0])
	defer pin.Unpin()
	if C.hnsw_search(ix.h, (*C.float)(unsafe.Pointer(&q[0])), C.size_t(k), &labels[0], (*C.float)(unsafe.Pointer(&dists[0])), &found, &e) != 0 {
		return nil, nil, cErr("hnsw search", e)
	}
	out := make([]uint64, int(found))
	for i := range out {
		out[i] = uint64(labels[i])
	}
	return out, dists[:int(found)], nil
}

// Len is the number of points ever added (deleted ones included).
func (ix *Index) Len() int { return int(C.hnsw_count(ix.h)) }

// Close frees the index.
func (ix *Index) Close() {
	if ix.h != nil {
		C.hnsw_free(ix.h)
		ix.h = nil
	}
}
