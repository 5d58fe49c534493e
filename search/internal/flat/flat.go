// Package flat is the exact (brute-force) nearest-neighbour scan: inner
// products with github.com/viterin/vek (AVX2/FMA assembly, pure Go build,
// so it works with CGO_ENABLED=0) and a bounded min-heap for the top k.
// It is the ground truth the ANN index is measured against, the index of
// small collections, and the fallback when hnswlib is not compiled in.
package flat

import (
	"container/heap"
	"math"
	"sort"

	"github.com/viterin/vek/vek32"
)

// Result is a scored slot.
type Result struct {
	Slot  int
	Score float32
}

// Dot is the inner product of two equal-length vectors.
func Dot(a, b []float32) float32 { return vek32.Dot(a, b) }

// Normalize scales v to unit length in place and reports false for a zero,
// NaN or infinite vector.
func Normalize(v []float32) bool {
	var n float64
	for _, x := range v {
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return false
		}
		n += f * f
	}
	if n == 0 || math.IsInf(n, 0) {
		return false
	}
	inv := float32(1 / math.Sqrt(n))
	for i := range v {
		v[i] *= inv
	}
	return true
}

// TopK keeps the k best results offered to it.
type TopK struct {
	k int
	h minHeap
}

// NewTopK keeps the k best.
func NewTopK(k int) *TopK { return &TopK{k: k, h: make(minHeap, 0, min(k, 4096))} }

// Offer considers one result.
func (t *TopK) Offer(slot int, score float32) {
	if t.k <= 0 {
		return
	}
	if len(t.h) < t.k {
		heap.Push(&t.h, Result{slot, score})
		return
	}
	if score > t.h[0].Score {
		t.h[0] = Result{slot, score}
		heap.Fix(&t.h, 0)
	}
}

// Floor is the score a new result must beat once full (-Inf before).
func (t *TopK) Floor() float32 {
	if len(t.h) < t.k {
		return float32(math.Inf(-1))
	}
	return t.h[0].Score
}

// Sorted returns the kept results, best first (ties by slot).
func (t *TopK) Sorted() []Result {
	out := append([]Result(nil), t.h...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Score != out[j].Score {
			return out[i].Score > out[j].Score
		}
		return out[i].Slot < out[j].Slot
	})
	return out
}

// Scan scores q against n slots read by vec (nil means skip) and returns the
// k best, best first.
func Scan(q []float32, n, k int, vec func(slot int) []float32) []Result {
	t := NewTopK(k)
	for s := range n {
		v := vec(s)
		if v == nil {
			continue
		}
		t.Offer(s, vek32.Dot(q, v))
	}
	return t.Sorted()
}

type minHeap []Result

func (h minHeap) Len() int           { return len(h) }
func (h minHeap) Less(i, j int) bool { return h[i].Score < h[j].Score }
func (h minHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *minHeap) Push(x any)        { *h = append(*h, x.(Result)) }
func (h *minHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
