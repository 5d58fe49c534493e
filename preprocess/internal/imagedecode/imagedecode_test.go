package imagedecode_test

import (
	"context"
	"errors"
	"testing"

	"github.com/lookalike-dev/lookalike/preprocess/internal/imagecorpus"
	"github.com/lookalike-dev/lookalike/preprocess/internal/imagedecode"
	"github.com/lookalike-dev/lookalike/preprocess/internal/resample"
)

func TestSniff(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"\xff\xd8\xff\xe0rest", imagedecode.JPEG},
		{"\x89PNG\r\n\x1a\nrest", imagedecode.PNG},
		{"GIF89a...", imagedecode.GIF},
		{"GIF87a...", imagedecode.GIF},
		{"RIFF\x00\x00\x00\x00WEBPVP8 ", imagedecode.WebP},
		{"RIFF\x00\x00\x00\x00WAVEfmt ", ""},
		{"\xff\xd8", ""},
		{"<html>", ""},
		{"", ""},
	}
	for _, tc := range tests {
		if got := imagedecode.Sniff([]byte(tc.in)); got != tc.want {
			t.Errorf("Sniff(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// sentinel reports whether err wraps one of the package's sentinels.
func sentinel(err error) bool {
	for _, s := range []error{imagedecode.ErrEmpty, imagedecode.ErrUnsupported, imagedecode.ErrCorrupt, imagedecode.ErrTooLarge, imagedecode.ErrDimensions, imagedecode.ErrTooComplex, imagedecode.ErrTooManyScans} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func TestInspectCorpus(t *testing.T) {
	want := map[string]error{
		"empty_body": imagedecode.ErrEmpty, "unsupported_format": imagedecode.ErrUnsupported,
		"corrupt_image": imagedecode.ErrCorrupt, "dimensions_too_large": imagedecode.ErrDimensions,
	}
	for _, c := range imagecorpus.Generate() {
		t.Run(c.Name, func(t *testing.T) {
			cfg, err := imagedecode.Inspect(c.Data, imagedecode.Limits{MaxBytes: 1 << 20, MaxPixels: 50_000_000})
			if err == nil {
				var img *imagedecode.Image
				img, err = imagedecode.Decode(context.Background(), c.Data, cfg, imagedecode.Options{}, nil)
				if err == nil {
					defer img.Release()
				}
			}
			if c.WantCode == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.Format != c.Format || cfg.Orientation != c.Orientation || cfg.Width != c.Width || cfg.Height != c.Height {
					t.Fatalf("config %+v, want %s %dx%d orientation %d", cfg, c.Format, c.Width, c.Height, c.Orientation)
				}
				return
			}
			if !errors.Is(err, want[c.WantCode]) {
				t.Fatalf("got %v, want %v", err, want[c.WantCode])
			}
		})
	}
}

func TestOrientationContainers(t *testing.T) {
	var jpegSeen, pngSeen bool
	for _, c := range imagecorpus.Generate() {
		if c.WantCode != "" || c.Orientation == 1 {
			continue
		}
		cfg, err := imagedecode.Inspect(c.Data, imagedecode.Limits{})
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		if cfg.Orientation != c.Orientation {
			t.Errorf("%s: orientation %d, want %d", c.Name, cfg.Orientation, c.Orientation)
		}
		jpegSeen = jpegSeen || c.Format == "jpeg"
		pngSeen = pngSeen || c.Format == "png"
	}
	if !jpegSeen || !pngSeen {
		t.Fatal("the corpus lost its oriented JPEG or PNG cases")
	}
}

// FuzzDecode feeds arbitrary bytes through header inspection, both
// decoders and the resampler. Nothing may panic, every refusal must wrap one
// of the package's errors, and a decoded image must be usable.
//
//	go test ./internal/imagedecode -run '^$' -fuzz FuzzDecode -fuzztime 20s
func FuzzDecode(f *testing.F) {
	for _, c := range imagecorpus.Generate() {
		f.Add(c.Data)
	}
	box, _ := resample.KernelFor("bilinear")
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := imagedecode.Inspect(data, imagedecode.Limits{MaxBytes: 4 << 20, MaxPixels: 1 << 22})
		if err != nil {
			if !sentinel(err) {
				t.Fatalf("Inspect error wraps no sentinel: %v", err)
			}
			return
		}
		if cfg.Orientation < 1 || cfg.Orientation > 8 || cfg.Width < 1 || cfg.Height < 1 {
			t.Fatalf("bad config %+v", cfg)
		}
		for _, pureGo := range []bool{false, true} {
			img, err := imagedecode.Decode(context.Background(), data, cfg, imagedecode.Options{MinScale: 0.1, PureGo: pureGo}, nil)
			if err != nil {
				if !sentinel(err) {
					t.Fatalf("Decode error wraps no sentinel: %v", err)
				}
				continue
			}
			if img.W < 1 || img.H < 1 || img.W > cfg.Width || img.H > cfg.Height {
				t.Fatalf("decoded %dx%d from a %dx%d header", img.W, img.H, cfg.Width, cfg.Height)
			}
			var p resample.Plan
			var s resample.Scratch
			p.Prepare(resample.Geometry{StoredW: cfg.Width, StoredH: cfg.Height, Orientation: cfg.Orientation,
				DecodedW: img.W, DecodedH: img.H, Scale: img.Scale},
				resample.Target{Mode: resample.ShorterCrop, W: 16, H: 16, Shorter: 20, Kernel: box})
			if err := p.Run(img, &s, nil); err != nil {
				t.Fatal(err)
			}
			img.Release()
		}
	})
}
