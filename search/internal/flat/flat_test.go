package flat

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		name string
		in   []float32
		ok   bool
	}{
		{"unit", []float32{3, 4}, true},
		{"zero", []float32{0, 0}, false},
		{"nan", []float32{float32(math.NaN()), 1}, false},
		{"inf", []float32{float32(math.Inf(1)), 1}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := append([]float32(nil), tc.in...)
			if got := Normalize(v); got != tc.ok {
				t.Fatalf("ok=%v want %v", got, tc.ok)
			}
			if tc.ok && math.Abs(float64(Dot(v, v))-1) > 1e-6 {
				t.Fatalf("norm %v", Dot(v, v))
			}
		})
	}
}

func TestScanMatchesSort(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const n, dim = 300, 17
	vs := make([][]float32, n)
	for i := range vs {
		vs[i] = make([]float32, dim)
		for j := range vs[i] {
			vs[i][j] = r.Float32() - 0.5
		}
	}
	q := vs[5]
	tests := []struct {
		name string
		k    int
	}{{"k1", 1}, {"k10", 10}, {"all", n}, {"more", n + 5}, {"zero", 0}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Scan(q, n, tc.k, func(s int) []float32 {
				if s == 7 {
					return nil
				}
				return vs[s]
			})
			var want []Result
			for s := range n {
				if s == 7 {
					continue
				}
				var d float32
				for j := range dim {
					d += q[j] * vs[s][j]
				}
				want = append(want, Result{s, d})
			}
			sort.Slice(want, func(i, j int) bool { return want[i].Score > want[j].Score })
			if len(want) > tc.k {
				want = want[:tc.k]
			}
			if len(got) != len(want) {
				t.Fatalf("len %d want %d", len(got), len(want))
			}
			for i := range got {
				if got[i].Slot != want[i].Slot || math.Abs(float64(got[i].Score-want[i].Score)) > 1e-5 {
					t.Fatalf("rank %d: %+v want %+v", i, got[i], want[i])
				}
			}
		})
	}
}
