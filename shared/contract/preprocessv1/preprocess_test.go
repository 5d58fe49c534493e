package preprocessv1

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"
)

func TestSpecValidate(t *testing.T) {
	mod := func(f func(*Spec)) Spec { s := ImageNet(); f(&s); return s }
	tests := []struct {
		name    string
		spec    Spec
		wantErr string
	}{
		{"imagenet", ImageNet(), ""},
		{"letterbox bgr nhwc f16", mod(func(s *Spec) {
			s.ResizeMode, s.ChannelOrder, s.Layout, s.DType, s.Background = ResizeLetterbox, "BGR", "NHWC", "float16", "#000000"
		}), ""},
		{"uint8 levels", mod(func(s *Spec) { s.DType = "uint8" }), ""},
		{"zero size", mod(func(s *Spec) { s.Width = 0 }), "size"},
		{"crop bigger than resize", mod(func(s *Spec) { s.ResizeShorter = 100 }), "resize_shorter"},
		{"mode", mod(func(s *Spec) { s.ResizeMode = "zoom" }), "resize_mode"},
		{"interp", mod(func(s *Spec) { s.Interpolation = "cubic9" }), "interpolation"},
		{"std zero", mod(func(s *Spec) { s.Std[1] = 0 }), "std[1]"},
		{"order", mod(func(s *Spec) { s.ChannelOrder = "RGBA" }), "channel_order"},
		{"layout", mod(func(s *Spec) { s.Layout = "CHW" }), "layout"},
		{"dtype", mod(func(s *Spec) { s.DType = "int8" }), "dtype"},
		{"background", mod(func(s *Spec) { s.Background = "white" }), "background"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.spec.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				back, err := DecodeSpec(tc.spec.Encode())
				if err != nil || back != tc.spec {
					t.Fatalf("header round trip: %v %+v", err, back)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want mention of %q", err, tc.wantErr)
			}
		})
	}
	if _, err := DecodeSpec(`{"width":224,"bogus":1}`); err == nil {
		t.Fatal("unknown field accepted")
	}
	if got := ImageNet().Shape(4); got[0] != 4 || got[1] != 3 || got[3] != 224 {
		t.Fatalf("Shape = %v", got)
	}
}

func TestWiden(t *testing.T) {
	// A 2x1 image, two items: levels chosen so every value says where it is.
	base := Spec{Width: 2, Height: 1, Scale: 1, Mean: [3]float32{0, 100, 200}, Std: [3]float32{1, 2, 4}, ChannelOrder: "RGB", Layout: "NCHW"}
	norm := func(c int, v byte) float32 { return (float32(v) - base.Mean[c]) / base.Std[c] }
	src := []byte{10, 11, 20, 21, 30, 31, 40, 41, 50, 51, 60, 61}
	bgr, nhwc, both := base, base, base
	bgr.ChannelOrder = "BGR"
	nhwc.Layout = "NHWC"
	both.ChannelOrder, both.Layout = "BGR", "NHWC"
	tests := []struct {
		name string
		spec Spec
		// source channel of each value
		ch []int
	}{
		{"NCHW RGB", base, []int{0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2}},
		{"NCHW BGR", bgr, []int{2, 2, 1, 1, 0, 0, 2, 2, 1, 1, 0, 0}},
		{"NHWC RGB", nhwc, []int{0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2}},
		{"NHWC BGR", both, []int{2, 1, 0, 2, 1, 0, 2, 1, 0, 2, 1, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := make([]byte, 4*len(src))
			if err := tc.spec.Widen(dst, src); err != nil {
				t.Fatal(err)
			}
			got, err := (tensorv1.Tensor{DType: tensorv1.Float32, Shape: []int{len(src)}, Data: dst}).Float32s(nil)
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range src {
				if want := norm(tc.ch[i], v); math.Abs(float64(got[i]-want)) > 1e-5 {
					t.Fatalf("value %d (level %d) = %v, want %v (source channel %d)", i, v, got[i], want, tc.ch[i])
				}
			}
		})
	}
	for _, bad := range []struct{ dst, src int }{{48, 11}, {44, 12}} {
		if err := base.Widen(make([]byte, bad.dst), make([]byte, bad.src)); err == nil {
			t.Errorf("Widen(%d bytes, %d levels) accepted", bad.dst, bad.src)
		}
	}
	if err := (Spec{}).Widen(nil, []byte{1}); err == nil {
		t.Error("a spec without a size widened")
	}
}

func TestBatchRoundTrip(t *testing.T) {
	tt := tensorv1.FromFloat32([]int{2, 1}, []float32{1, 2})
	meta := BatchMeta{Spec: ImageNet(), Items: []ItemStatus{{Index: 0, Row: 0}, {Index: 1, Row: -1, Error: &ItemError{Status: 400, Code: "corrupt_image", Message: "x"}}, {Index: 2, Row: 1}}}
	b, err := MarshalBatch(meta, &tt)
	if err != nil {
		t.Fatal(err)
	}
	gm, gt, err := UnmarshalBatch(b)
	if err != nil || gt == nil || gt.Shape[0] != 2 || len(gm.Items) != 3 || gm.Items[1].Error.Code != "corrupt_image" {
		t.Fatalf("round trip: %v %+v", err, gm)
	}
	allFailed := BatchMeta{Items: []ItemStatus{{Index: 0, Row: -1, Error: &ItemError{Code: "empty_body"}}}}
	b, _ = MarshalBatch(allFailed, nil)
	if _, gt, err := UnmarshalBatch(b); err != nil || gt != nil {
		t.Fatalf("all failed: %v %v", err, gt)
	}
	bad := []struct {
		name string
		b    []byte
	}{
		{"short", []byte{1}},
		{"length past end", []byte{200, 0, 0, 0, '{'}},
		{"rows without tensor", func() []byte { b, _ := MarshalBatch(meta, nil); return b }()},
	}
	for _, tc := range bad {
		if _, _, err := UnmarshalBatch(tc.b); !errors.Is(err, tensorv1.ErrFormat) {
			t.Errorf("%s: err = %v, want ErrFormat", tc.name, err)
		}
	}
}

func TestRefusesDType(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"older service", apierror.BadRequest(apierror.CodeInvalidArgument, `invalid preprocess spec: dtype "uint8" is not float32 or float16`), true},
		{"another spec field", apierror.BadRequest(apierror.CodeInvalidArgument, `invalid preprocess spec: layout "CHW" is not NCHW or NHWC`), false},
		{"a bad image", apierror.New(422, CodeCorruptImage, "the dtype of nothing"), false},
		{"not an API error", errors.New("dtype"), false},
		{"nil", nil, false},
	}
	for _, tc := range tests {
		if got := RefusesDType(tc.err); got != tc.want {
			t.Errorf("%s: RefusesDType = %v, want %v", tc.name, got, tc.want)
		}
	}
}
