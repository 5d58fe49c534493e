package turbojpeg

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"testing"
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
		if _, _, _, err := DecodeRGB(j, Factor{1, 2}, false, nil); !errors.Is(err, ErrUnavailable) {
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
		pix, w, hh, err := DecodeRGB(j, tc.f, false, nil)
		if err != nil || w != tc.w || hh != tc.h || len(pix) != w*hh*3 {
			t.Fatalf("%v: %dx%d (%d bytes), %v; want %dx%d", tc.f, w, hh, len(pix), err, tc.w, tc.h)
		}
		// the middle pixel keeps its colour: R ~ x, G ~ y, B ~ 128
		o := (hh/2*w + w/2) * 3
		if d := int(pix[o+2]) - 128; d < -6 || d > 6 {
			t.Errorf("%v: blue %d, want ~128", tc.f, pix[o+2])
		}
	}
	if _, _, _, err := DecodeRGB(j[:len(j)/2], Factor{1, 1}, false, nil); err == nil {
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
