package resample

import (
	"testing"
)

func TestLayoutFor(t *testing.T) {
	crop := Target{Mode: ShorterCrop, W: 224, H: 224, Shorter: 256}
	tests := []struct {
		name string
		t    Target
		w, h int
		want Layout
	}{
		{"landscape shorter_crop", crop, 640, 480, Layout{RW: 341, RH: 256, OffX: 58, OffY: 16}},
		{"portrait shorter_crop", crop, 480, 640, Layout{RW: 256, RH: 341, OffX: 16, OffY: 58}},
		{"square shorter_crop", crop, 1000, 1000, Layout{RW: 256, RH: 256, OffX: 16, OffY: 16}},
		{"tiny upscaled", crop, 10, 20, Layout{RW: 256, RH: 512, OffX: 16, OffY: 144}},
		{"letterbox wide", Target{Mode: Letterbox, W: 100, H: 100}, 200, 100, Layout{RW: 100, RH: 50, OffX: 0, OffY: -25}},
		{"letterbox tall", Target{Mode: Letterbox, W: 100, H: 100}, 50, 200, Layout{RW: 25, RH: 100, OffX: -37, OffY: 0}},
		{"squash", Target{Mode: Squash, W: 30, H: 40}, 640, 480, Layout{RW: 30, RH: 40}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := LayoutFor(tc.t, tc.w, tc.h); got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestKernelFor(t *testing.T) {
	for _, name := range []string{"bilinear", "lanczos3", "catmullrom", "box", "nearest"} {
		k, err := KernelFor(name)
		if err != nil {
			t.Fatal(err)
		}
		if k.Support > 0 && k.Fn(0) != 1 {
			t.Errorf("%s(0) = %v, want 1", name, k.Fn(0))
		}
	}
	if _, err := KernelFor("cubic"); err == nil {
		t.Fatal("unknown kernel accepted")
	}
}

// rgbSource is packed RGB, w x h.
type rgbSource struct {
	w   int
	pix []byte
}

func (s rgbSource) Row(y, x0, x1 int, _ *[]byte) []byte {
	return s.pix[(y*s.w+x0)*3 : (y*s.w+x1)*3]
}

// TestOrientations runs a 3x2 image with distinct pixels through every
// orientation at scale 1 with nearest sampling and compares with the EXIF
// definition, written out by hand.
func TestOrientations(t *testing.T) {
	// stored pixels a b c / d e f, value = index*10 in every channel
	src := rgbSource{w: 3, pix: make([]byte, 18)}
	for i := range 6 {
		src.pix[3*i], src.pix[3*i+1], src.pix[3*i+2] = byte(i*10), byte(i*10), byte(i*10)
	}
	a, b, c, d, e, f := 0, 10, 20, 30, 40, 50
	want := map[int][][]int{
		1: {{a, b, c}, {d, e, f}},
		2: {{c, b, a}, {f, e, d}},
		3: {{f, e, d}, {c, b, a}},
		4: {{d, e, f}, {a, b, c}},
		5: {{a, d}, {b, e}, {c, f}},
		6: {{d, a}, {e, b}, {f, c}},
		7: {{f, c}, {e, b}, {d, a}},
		8: {{c, f}, {b, e}, {a, d}},
	}
	k, _ := KernelFor("nearest")
	for o := 1; o <= 8; o++ {
		w := want[o]
		H, W := len(w), len(w[0])
		var p Plan
		var s Scratch
		p.Prepare(Geometry{StoredW: 3, StoredH: 2, Orientation: o, DecodedW: 3, DecodedH: 2, Scale: 1},
			Target{Mode: Squash, W: W, H: H, Kernel: k})
		if err := p.Run(src, &s, nil); err != nil {
			t.Fatal(err)
		}
		img := p.Render(&s, [3]uint8{})
		for y := range H {
			for x := range W {
				if got := int(img.Pix[img.PixOffset(x, y)]); got != w[y][x] {
					t.Errorf("orientation %d: (%d,%d) = %d, want %d", o, x, y, got, w[y][x])
				}
			}
		}
	}
}

// TestScaledDecodeGeometry checks that a half-size decode lands on the same
// output as a full-size one for a smooth image (geometry from the full size).
func TestScaledDecodeGeometry(t *testing.T) {
	const W, H = 64, 48
	full := rgbSource{w: W, pix: make([]byte, W*H*3)}
	half := rgbSource{w: W / 2, pix: make([]byte, W/2*H/2*3)}
	for y := range H {
		for x := range W {
			v := byte(2*x + y)
			full.pix[(y*W+x)*3], full.pix[(y*W+x)*3+1], full.pix[(y*W+x)*3+2] = v, v, v
		}
	}
	for y := range H / 2 {
		for x := range W / 2 {
			// the 2x2 block mean 4x+2y+1.5, rounded down, as a 1/2 DCT decode gives
			v := byte(4*x + 2*y + 1)
			half.pix[(y*W/2+x)*3], half.pix[(y*W/2+x)*3+1], half.pix[(y*W/2+x)*3+2] = v, v, v
		}
	}
	k, _ := KernelFor("bilinear")
	tg := Target{Mode: ShorterCrop, W: 16, H: 16, Shorter: 20, Kernel: k}
	render := func(src rgbSource, dw, dh int, scale float64) []byte {
		var p Plan
		var s Scratch
		p.Prepare(Geometry{StoredW: W, StoredH: H, Orientation: 1, DecodedW: dw, DecodedH: dh, Scale: scale}, tg)
		if err := p.Run(src, &s, nil); err != nil {
			t.Fatal(err)
		}
		return p.Render(&s, [3]uint8{}).Pix
	}
	a, b := render(full, W, H, 1), render(half, W/2, H/2, 0.5)
	for i := range a {
		if d := int(a[i]) - int(b[i]); d < -2 || d > 2 {
			t.Fatalf("byte %d: full %d, half %d", i, a[i], b[i])
		}
	}
}
