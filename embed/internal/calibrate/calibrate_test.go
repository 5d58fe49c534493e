package calibrate

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"
)

// rowEncoder maps an item of 2 float32 (a, b) to the row (a, b, a+b).
type rowEncoder struct{ batches []int }

func (e *rowEncoder) Provider() string { return "fake" }
func (e *rowEncoder) Run(input []byte, n int) ([]float32, int, error) {
	e.batches = append(e.batches, n)
	t := tensorv1.Tensor{DType: tensorv1.Float32, Shape: []int{n, 2}, Data: input}
	v, err := t.Float32s(nil)
	if err != nil {
		return nil, 0, err
	}
	out := make([]float32, 0, 3*n)
	for i := range n {
		out = append(out, v[2*i], v[2*i+1], v[2*i]+v[2*i+1])
	}
	return out, 3, nil
}

func write(t *testing.T, dir, name string, rows ...[2]float32) {
	t.Helper()
	var v []float32
	for _, r := range rows {
		v = append(v, r[0], r[1])
	}
	b, err := tensorv1.Marshal(tensorv1.FromFloat32([]int{len(rows), 2}, v))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestMeanOverTensorDir(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.lkt", [2]float32{1, 2}, [2]float32{3, 4}, [2]float32{5, 6})
	write(t, dir, "b.lkt", [2]float32{7, 8})
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("skip"), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := NewTensorDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	enc := &rowEncoder{}
	mean, n, err := Mean(context.Background(), enc, src, 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := []float32{4, 5, 9}
	for i := range want {
		if math.Abs(float64(mean[i]-want[i])) > 1e-6 {
			t.Fatalf("mean %v, want %v", mean, want)
		}
	}
	if n != 4 || len(enc.batches) != 3 {
		t.Errorf("%d items in batches %v, want 4 in [2 1 1]", n, enc.batches)
	}
}

func TestMeanErrors(t *testing.T) {
	empty := t.TempDir()
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "x.lkt"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	imgs := t.TempDir()
	if err := os.WriteFile(filepath.Join(imgs, "a.png"), []byte("png"), 0o644); err != nil {
		t.Fatal(err)
	}
	failing := func(context.Context, []byte) (tensorv1.Tensor, error) {
		return tensorv1.Tensor{}, errors.New("preprocess down")
	}
	tests := []struct {
		name    string
		src     func() (Source, error)
		wantErr string
	}{
		{"empty set", func() (Source, error) { return NewTensorDir(empty) }, "empty"},
		{"bad tensor", func() (Source, error) { return NewTensorDir(bad) }, "malformed"},
		{"preprocess fails", func() (Source, error) { return NewImageDir(imgs, failing) }, "preprocess down"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src, err := tc.src()
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = Mean(context.Background(), &rowEncoder{}, src, 3, 8)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
