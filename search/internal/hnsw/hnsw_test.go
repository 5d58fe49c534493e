package hnsw

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

func unit(r *rand.Rand, dim int) []float32 {
	v := make([]float32, dim)
	var n float64
	for i := range v {
		v[i] = float32(r.NormFloat64())
		n += float64(v[i]) * float64(v[i])
	}
	for i := range v {
		v[i] /= float32(math.Sqrt(n))
	}
	return v
}

func TestIndexAddSearchDeleteSaveLoad(t *testing.T) {
	if !Available {
		if _, err := New(4, 10, Params{}); err == nil {
			t.Fatal("New must fail without hnswlib")
		}
		t.Log("built without hnswlib: checked that New fails")
		return
	}
	const dim, n = 32, 500
	r := rand.New(rand.NewPCG(1, 2))
	vecs := make([]float32, 0, n*dim)
	labels := make([]uint64, n)
	for i := range n {
		vecs = append(vecs, unit(r, dim)...)
		labels[i] = uint64(i)
	}
	ix, err := New(dim, 16, Params{M: 16, EfConstruction: 100, Ef: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if err := ix.Add(vecs, labels, 2); err != nil {
		t.Fatal(err)
	}
	if ix.Len() != n {
		t.Fatalf("len %d, want %d", ix.Len(), n)
	}
	tests := []struct {
		name  string
		label uint64
	}{{"first", 0}, {"middle", 250}, {"last", n - 1}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := vecs[int(tc.label)*dim : int(tc.label+1)*dim]
			got, d, err := ix.Search(q, 3)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 3 || got[0] != tc.label || d[0] > 1e-4 || d[1] < d[0] {
				t.Fatalf("search %d: labels %v dists %v", tc.label, got, d)
			}
		})
	}
	if err := ix.MarkDeleted(250); err != nil {
		t.Fatal(err)
	}
	got, _, _ := ix.Search(vecs[250*dim:251*dim], 5)
	for _, l := range got {
		if l == 250 {
			t.Fatal("deleted label returned")
		}
	}
	path := filepath.Join(t.TempDir(), "ix.bin")
	if err := ix.Save(path); err != nil {
		t.Fatal(err)
	}
	ix2, err := Load(path, dim, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer ix2.Close()
	got, _, _ = ix2.Search(vecs[7*dim:8*dim], 1)
	if len(got) != 1 || got[0] != 7 {
		t.Fatalf("loaded index search: %v", got)
	}
	// Revive the deleted label with a new vector.
	if err := ix2.Add(vecs[7*dim:8*dim], []uint64{250}, 1); err != nil {
		t.Fatal(err)
	}
	got, _, _ = ix2.Search(vecs[7*dim:8*dim], 2)
	if len(got) != 2 || (got[0] != 250 && got[1] != 250) {
		t.Fatalf("revived label not found: %v", got)
	}
	if _, _, err := ix2.Search([]float32{1}, 1); err == nil {
		t.Fatal("wrong dim query must fail")
	}
}
