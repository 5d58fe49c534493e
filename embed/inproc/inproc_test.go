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
