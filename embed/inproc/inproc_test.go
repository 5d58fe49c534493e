//go:build cgo

package inproc

import (
	"context"
	"math"
	"testing"

	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"

	"github.com/lookalike-dev/lookalike/embed/internal/testenv"
)

func TestEmbed(t *testing.T) {
	e, err := Open(context.Background(), Options{SpecDir: testenv.SpecDir(t), ModelDir: testenv.ModelDir(t), ORTLib: testenv.ORTLib(t),
		Models: []string{testenv.DefaultModelID}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	in := make([]float32, 2*3*224*224)
	for i := range in {
		in[i] = float32(i%97)/48 - 1
	}
	tests := []struct {
		name, model string
		wantErr     bool
	}{{"default", "", false}, {"by id", testenv.DefaultModelID, false}, {"unknown", "nope-v9", true}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, rows, err := e.Embed(context.Background(), tensorv1.FromFloat32([]int{2, 3, 224, 224}, in), tc.model)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v", err)
			}
			if tc.wantErr {
				return
			}
			if id != testenv.DefaultModelID || len(rows) != 2 || len(rows[0]) != 1280 {
				t.Fatalf("got %s, %d rows", id, len(rows))
			}
			var n float64
			for _, v := range rows[0] {
				n += float64(v) * float64(v)
			}
			if math.Abs(n-1) > 1e-3 {
				t.Fatalf("row norm² %v, want 1", n)
			}
		})
	}
}

// The model gives the same embedding for 8-bit levels sent as uint8 as for
// the float32 tensor preprocess would have made of them.
func TestEmbedUint8MatchesFloat32(t *testing.T) {
	e, err := Open(context.Background(), Options{SpecDir: testenv.SpecDir(t), ModelDir: testenv.ModelDir(t), ORTLib: testenv.ORTLib(t),
		Models: []string{testenv.DefaultModelID}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	spec := e.Models()[0]
	levels := make([]byte, 3*224*224)
	for i := range levels {
		levels[i] = byte((i/224)%256 ^ (i%224)*3)
	}
	wide := make([]byte, 4*len(levels))
	if err := spec.Preprocess.Widen(wide, levels); err != nil {
		t.Fatal(err)
	}
	_, want, err := e.Embed(context.Background(), tensorv1.Tensor{DType: tensorv1.Float32, Shape: []int{1, 3, 224, 224}, Data: wide}, "")
	if err != nil {
		t.Fatal(err)
	}
	_, got, err := e.Embed(context.Background(), tensorv1.Tensor{DType: tensorv1.Uint8, Shape: []int{1, 3, 224, 224}, Data: levels}, "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range want[0] {
		if got[0][i] != want[0][i] {
			t.Fatalf("value %d: uint8 gives %v, float32 %v", i, got[0][i], want[0][i])
		}
	}
}
