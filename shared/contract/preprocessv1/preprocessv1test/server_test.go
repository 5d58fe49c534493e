package preprocessv1test_test

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"testing"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1/preprocessv1test"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"
)

func pngOf(t *testing.T, w, h int, c color.Color) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, c)
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func spec(dtype string) *preprocessv1.Spec {
	s := preprocessv1.Spec{Width: 4, Height: 4, ResizeMode: preprocessv1.ResizeSquash, Interpolation: "nearest",
		Scale: 1.0 / 255, Mean: [3]float32{0, 0, 0}, Std: [3]float32{1, 1, 1}, ChannelOrder: "RGB", Layout: "NCHW", DType: dtype}
	return &s
}

func TestSingle(t *testing.T) {
	ctx := context.Background()
	s := preprocessv1test.New().Serve()
	t.Cleanup(s.Close)
	c := &preprocessv1.Client{BaseURL: s.URL()}
	red := pngOf(t, 10, 6, color.RGBA{255, 0, 0, 255})
	tt, facts, err := c.Preprocess(ctx, red, spec("uint8"))
	if err != nil {
		t.Fatal(err)
	}
	if tt.DType != tensorv1.Uint8 || len(tt.Data) != 48 || tt.Data[0] != 255 || tt.Data[16] != 0 {
		t.Fatalf("tensor %s %v %v", tt.DType, tt.Shape, tt.Data[:20])
	}
	if facts.Format != "png" || facts.Width != 10 || facts.Height != 6 || len(facts.PHash) != 16 {
		t.Fatalf("facts %+v", facts)
	}
	f32, _, err := c.Preprocess(ctx, red, spec("float32"))
	if err != nil || f32.DType != tensorv1.Float32 {
		t.Fatalf("float32: %v %v", f32.DType, err)
	}
	if fs, _ := f32.Float32s(nil); fs[0] != 1 || fs[16] != 0 {
		t.Fatalf("widened %v", fs[:20])
	}
	refusals := []struct {
		name   string
		body   []byte
		status int
		code   string
	}{
		{"empty", nil, http.StatusBadRequest, preprocessv1.CodeEmptyBody},
		{"not an image", []byte("hello, world"), http.StatusUnsupportedMediaType, preprocessv1.CodeUnsupportedFormat},
		{"truncated", red[:len(red)/2], http.StatusUnprocessableEntity, preprocessv1.CodeCorruptImage},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := c.Preprocess(ctx, tc.body, spec("uint8"))
			if e, ok := apierror.As(err); !ok || e.Status != tc.status || e.Code != tc.code {
				t.Fatalf("got %v, want %d %s", err, tc.status, tc.code)
			}
		})
	}
	s.SetFloatOnly(true)
	if _, _, err := c.Preprocess(ctx, red, spec("uint8")); !preprocessv1.RefusesDType(err) {
		t.Fatalf("a float-only preprocess refuses uint8: %v", err)
	}
	if s.Asked("uint8") != 5 || s.Asked("float32") != 1 || s.Calls() != 6 || len(s.Specs()) != 6 {
		t.Fatalf("asked %d/%d calls %d specs %d", s.Asked("uint8"), s.Asked("float32"), s.Calls(), len(s.Specs()))
	}
}

func TestBatch(t *testing.T) {
	ctx := context.Background()
	s := preprocessv1test.New().Serve()
	t.Cleanup(s.Close)
	c := &preprocessv1.Client{BaseURL: s.URL()}
	red, blue := pngOf(t, 8, 8, color.RGBA{255, 0, 0, 255}), pngOf(t, 8, 8, color.RGBA{0, 0, 255, 255})
	meta, tt, err := c.PreprocessBatch(ctx, [][]byte{red, []byte("junk"), blue}, spec("uint8"))
	if err != nil {
		t.Fatal(err)
	}
	if len(meta.Items) != 3 || meta.Items[0].Row != 0 || meta.Items[1].Row != -1 || meta.Items[2].Row != 1 ||
		meta.Items[1].Error.Code != preprocessv1.CodeUnsupportedFormat || tt.Shape[0] != 2 {
		t.Fatalf("items %+v shape %v", meta.Items, tt.Shape)
	}
	s.FailItems(1)
	meta, _, err = c.PreprocessBatch(ctx, [][]byte{red, blue}, spec("uint8"))
	if err != nil || meta.Items[0].Error == nil || meta.Items[0].Error.Code != apierror.CodeOverloaded || meta.Items[1].Error != nil {
		t.Fatalf("a failed item fails alone: %+v %v", meta.Items, err)
	}
	s.FailNext(1)
	if _, _, err := c.PreprocessBatch(ctx, [][]byte{red}, spec("uint8")); apierror.CodeOf(err) != apierror.CodeUnavailable {
		t.Fatalf("outage: %v", err)
	}
	if _, _, err := c.PreprocessBatch(ctx, [][]byte{red}, spec("uint8")); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
	if s.Images() != 6 {
		t.Fatalf("images %d", s.Images())
	}
}
