package turbojpeg

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"testing"
	"time"

	"github.com/lookalike-dev/lookalike/preprocess/internal/imagecorpus"
)

func sample(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 128, 255})
		}
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestDecodeRGB(t *testing.T) {
	j := sample(t, 200, 100)
	if !Available() {
		if _, _, _, err := DecodeRGB(context.Background(), j, Factor{1, 2}, false, nil); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("got %v, want ErrUnavailable", err)
		}
		return
	}
	h, err := DecodeHeader(j)
	if err != nil || h.Width != 200 || h.Height != 100 {
		t.Fatalf("header %+v, %v", h, err)
	}
	tests := []struct {
		f    Factor
		w, h int
	}{{Factor{1, 1}, 200, 100}, {Factor{1, 2}, 100, 50}, {Factor{1, 4}, 50, 25}, {Factor{1, 8}, 25, 13}}
	for _, tc := range tests {
		pix, w, hh, err := DecodeRGB(context.Background(), j, tc.f, false, nil)
		if err != nil || w != tc.w || hh != tc.h || len(pix) != w*hh*3 {
			t.Fatalf("%v: %dx%d (%d bytes), %v; want %dx%d", tc.f, w, hh, len(pix), err, tc.w, tc.h)
		}
		// the middle pixel keeps its colour: R ~ x, G ~ y, B ~ 128
		o := (hh/2*w + w/2) * 3
		if d := int(pix[o+2]) - 128; d < -6 || d > 6 {
			t.Errorf("%v: blue %d, want ~128", tc.f, pix[o+2])
		}
	}
	if _, _, _, err := DecodeRGB(context.Background(), j[:len(j)/2], Factor{1, 1}, false, nil); err == nil {
		t.Fatal("truncated JPEG decoded without error")
	}
	if _, err := DecodeHeader([]byte("not a jpeg")); err == nil {
		t.Fatal("garbage header accepted")
	}
}

func TestOneArena(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{}, false},
		{map[string]string{"MALLOC_ARENA_MAX": "1"}, true},
		{map[string]string{"MALLOC_ARENA_MAX": "2"}, false},
		{map[string]string{"GLIBC_TUNABLES": "glibc.malloc.tcache_count=0:glibc.malloc.arena_max=1"}, true},
		{map[string]string{"GLIBC_TUNABLES": "glibc.malloc.arena_max=16"}, false},
	}
	for _, tc := range tests {
		if got := OneArena(func(k string) string { return tc.env[k] }); got != tc.want {
			t.Errorf("OneArena(%v) = %v, want %v", tc.env, got, tc.want)
		}
	}
}

// A decode whose context ends stops between two rows of its pass, long
// before it would have finished, and says why; a second decode after it
// works.
func TestDecodeStopsWhenCancelled(t *testing.T) {
	if !Available() {
		t.Skip("built without libjpeg-turbo")
	}
	// Many passes over a large frame: a decode of a second or so.
	slow := imagecorpus.Craft(imagecorpus.Crafted{W: 7000, H: 7000, Comps: 1, Adobe: -1, Progressive: true, Sized: true, ACScans: 30})
	f := Factor{Num: 1, Denom: 8}
	start := time.Now()
	if _, _, _, err := DecodeRGB(context.Background(), slow, f, false, nil); err != nil {
		t.Fatal(err)
	}
	full := time.Since(start)
	ctx, cancel := context.WithTimeout(context.Background(), full/10)
	defer cancel()
	start = time.Now()
	_, _, _, err := DecodeRGB(ctx, slow, f, false, nil)
	stopped := time.Since(start)
	t.Logf("full decode %v; with a deadline of %v, stopped after %v: %v", full, full/10, stopped, err)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the deadline", err)
	}
	if stopped > full/2 {
		t.Fatalf("stopped after %v, the whole decode takes %v", stopped, full)
	}
	if _, _, _, err := DecodeRGB(context.Background(), sample(t, 64, 48), Factor{1, 1}, false, nil); err != nil {
		t.Fatal(err)
	}
}
