package embedv1test_test

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1/embedv1test"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"
)

func spec() preprocessv1.Spec {
	return preprocessv1.Spec{Width: 4, Height: 4, ResizeMode: preprocessv1.ResizeSquash, Interpolation: "nearest",
		Scale: 1.0 / 255, Mean: [3]float32{0.5, 0.5, 0.5}, Std: [3]float32{0.5, 0.5, 0.5}, ChannelOrder: "RGB", Layout: "NCHW", DType: "float32"}
}

func levels(n int, seed byte) []byte {
	b := make([]byte, n*3*4*4)
	for i := range b {
		b[i] = byte(i)*seed + seed
	}
	return b
}

func TestEmbed(t *testing.T) {
	ctx := context.Background()
	s := embedv1test.New(embedv1test.Model("a-v1", 8, spec()), embedv1test.Model("b-v1", 8, spec())).Serve()
	t.Cleanup(s.Close)
	c := &embedv1.Client{BaseURL: s.URL()}
	ms, err := c.Models(ctx)
	if err != nil || len(ms) != 2 || !ms[0].Default || ms[1].Default {
		t.Fatalf("models %+v %v", ms, err)
	}
	lv := levels(2, 3)
	u8 := tensorv1.Tensor{DType: tensorv1.Uint8, Shape: spec().Shape(2), Data: lv}
	f32 := tensorv1.Tensor{DType: tensorv1.Float32, Shape: spec().Shape(2), Data: make([]byte, 4*len(lv))}
	if err := spec().Widen(f32.Data, lv); err != nil {
		t.Fatal(err)
	}
	a8, err := c.Embed(ctx, u8, "")
	if err != nil {
		t.Fatal(err)
	}
	a32, err := c.Embed(ctx, f32, "a-v1")
	if err != nil {
		t.Fatal(err)
	}
	b32, err := c.Embed(ctx, f32, "b-v1")
	if err != nil {
		t.Fatal(err)
	}
	if a8.ModelID != "a-v1" || a8.Dim != 8 || len(a8.Vectors) != 2 {
		t.Fatalf("default model's answer %+v", a8)
	}
	if !slices.Equal(a8.Vectors[0], a32.Vectors[0]) {
		t.Fatal("uint8 levels widened through the spec embed like the float32 tensor")
	}
	if slices.Equal(a32.Vectors[0], b32.Vectors[0]) {
		t.Fatal("two models are two vector spaces")
	}
	if s.Calls() != 3 || s.Rows() != 6 || s.DTypes("uint8") != 1 || s.DTypes("float32") != 2 || !slices.Equal(s.BatchSizes(), []int{2, 2, 2}) {
		t.Fatalf("calls %d rows %d dtypes %d/%d sizes %v", s.Calls(), s.Rows(), s.DTypes("uint8"), s.DTypes("float32"), s.BatchSizes())
	}
	refusals := []struct {
		name   string
		t      tensorv1.Tensor
		model  string
		status int
		code   string
	}{
		{"unknown model", u8, "nope", http.StatusNotFound, apierror.CodeNotFound},
		{"wrong shape", tensorv1.Tensor{DType: tensorv1.Uint8, Shape: []int{1, 3, 2, 2}, Data: make([]byte, 12)}, "", http.StatusBadRequest, apierror.CodeInvalidArgument},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Embed(ctx, tc.t, tc.model)
			if e, ok := apierror.As(err); !ok || e.Status != tc.status || e.Code != tc.code {
				t.Fatalf("got %v, want %d %s", err, tc.status, tc.code)
			}
		})
	}
}
