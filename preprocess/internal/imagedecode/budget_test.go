package imagedecode_test

import (
	"context"
	"errors"
	"runtime"
	"testing"

	"github.com/lookalike-dev/lookalike/preprocess/internal/imagecorpus"
	"github.com/lookalike-dev/lookalike/preprocess/internal/imagedecode"
	"github.com/lookalike-dev/lookalike/preprocess/internal/turbojpeg"
)

var scanLimits = imagedecode.ScanLimits{MaxScans: 256, MaxVisitsPerBlock: 32}

// decodeBoth inspects and decodes data with each decoder present, under
// budget, and returns the errors (nil for a decode).
func decodeBoth(t *testing.T, data []byte, budget int64) map[string]error {
	t.Helper()
	out := map[string]error{}
	for _, pureGo := range []bool{false, true} {
		name := "go"
		if !pureGo {
			if !turbojpeg.Available() {
				continue
			}
			name = "turbojpeg"
		}
		cfg, err := imagedecode.Inspect(data, imagedecode.Limits{MaxPixels: 50_000_000, Scans: scanLimits})
		if err == nil {
			var img *imagedecode.Image
			img, err = imagedecode.Decode(context.Background(), data, cfg, imagedecode.Options{MinScale: 0.01, PureGo: pureGo, Budget: budget}, nil)
			if err == nil {
				img.Release()
			}
		}
		out[name] = err
	}
	return out
}

// Tiny uploads declaring a 7000x7000 frame are refused from their markers,
// before either decoder allocates anything, whatever their colour space,
// mode, and whether they end.
func TestTinyJPEGBombsRefusedBeforeDecoding(t *testing.T) {
	for _, c := range imagecorpus.Bombs(7000, 7000) {
		t.Run(c.Name(), func(t *testing.T) {
			data := imagecorpus.Craft(c)
			if len(data) > 1024 {
				t.Fatalf("bomb is %d bytes, want < 1 KiB", len(data))
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			errs := decodeBoth(t, data, 1<<30)
			runtime.ReadMemStats(&after)
			for dec, err := range errs {
				if !errors.Is(err, imagedecode.ErrCorrupt) {
					t.Errorf("%s: got %v, want corrupt", dec, err)
				}
			}
			if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
				t.Errorf("refusing allocated %d bytes", d)
			}
		})
	}
}

// The crafted files are valid JPEGs: at a size their bytes can code, both
// decoders decode them.
func TestCraftedJPEGsDecode(t *testing.T) {
	for _, c := range imagecorpus.Bombs(200, 120) {
		if c.Truncate {
			continue
		}
		c.Sized = true
		t.Run(c.Name(), func(t *testing.T) {
			for dec, err := range decodeBoth(t, imagecorpus.Craft(c), 0) {
				if err != nil {
					t.Errorf("%s: %v", dec, err)
				}
			}
		})
	}
	prog := imagecorpus.Crafted{W: 200, H: 120, Comps: 3, Adobe: -1, Progressive: true, Sized: true, ACScans: 6}
	for dec, err := range decodeBoth(t, imagecorpus.Craft(prog), 0) {
		if err != nil {
			t.Errorf("%s: %s: %v", prog.Name(), dec, err)
		}
	}
}

func TestScanLimits(t *testing.T) {
	tests := []struct {
		c    imagecorpus.Crafted
		want error
	}{
		{imagecorpus.Crafted{W: 3000, H: 3000, Comps: 1, Adobe: -1, Progressive: true, NoDC: true, ACScans: 2000}, imagedecode.ErrTooManyScans},
		{imagecorpus.Crafted{W: 3000, H: 3000, Comps: 1, Adobe: -1, Progressive: true, NoDC: true, ACScans: 257}, imagedecode.ErrTooManyScans},
		{imagecorpus.Crafted{W: 3000, H: 3000, Comps: 1, Adobe: -1, Progressive: true, NoDC: true, ACScans: 40}, imagedecode.ErrTooManyScans},
		{imagecorpus.Crafted{W: 3000, H: 3000, Comps: 1, Adobe: -1, Progressive: true, Sized: true, ACScans: 20}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.c.Name(), func(t *testing.T) {
			_, err := imagedecode.Inspect(imagecorpus.Craft(tc.c), imagedecode.Limits{Scans: scanLimits})
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// A decode whose estimate is over the budget is refused before it runs; a
// JPEG libjpeg-turbo only warns about gets image/jpeg's second opinion only
// when that decode fits the budget too.
func TestDecodeBudget(t *testing.T) {
	sized := func(c imagecorpus.Crafted) []byte { c.Sized = true; return imagecorpus.Craft(c) }
	cmyk := sized(imagecorpus.Crafted{W: 7000, H: 7000, Comps: 4, Adobe: 0, Progressive: true})
	for dec, err := range decodeBoth(t, cmyk, 192<<20) {
		if !errors.Is(err, imagedecode.ErrTooComplex) {
			t.Errorf("cmyk progressive 7000x7000, %s: got %v, want too complex", dec, err)
		}
	}
	baseline := sized(imagecorpus.Crafted{W: 7000, H: 7000, Comps: 4, Adobe: 0})
	cfg, err := imagedecode.Inspect(baseline, imagedecode.Limits{Scans: scanLimits})
	if err != nil {
		t.Fatal(err)
	}
	if dec, n := cfg.Cost(imagedecode.Options{MinScale: 0.01}); turbojpeg.Available() && (dec != imagedecode.DecoderTurbo || n > 16<<20) {
		t.Errorf("cmyk baseline 7000x7000 at 1/8: %s, %d bytes, want turbojpeg under 16 MiB", dec, n)
	}
	if _, n := cfg.Cost(imagedecode.Options{PureGo: true}); n < 7000*7000*8 {
		t.Errorf("image/jpeg's cmyk baseline 7000x7000: %d bytes, want >= %d", n, 7000*7000*8)
	}
	if turbojpeg.Available() {
		// No DC scan: libjpeg-turbo decodes it with a warning; image/jpeg
		// would need 7000x7000x5 bytes.
		warned := imagecorpus.Craft(imagecorpus.Crafted{W: 7000, H: 7000, Comps: 1, Adobe: -1, Progressive: true, NoDC: true, ACScans: 1})
		cfg, err := imagedecode.Inspect(warned, imagedecode.Limits{Scans: scanLimits})
		if err != nil {
			t.Fatal(err)
		}
		var admitted []string
		admit := func(dec string, n int64) (func(), error) { admitted = append(admitted, dec); return func() {}, nil }
		_, err = imagedecode.Decode(context.Background(), warned, cfg, imagedecode.Options{MinScale: 0.01, Budget: 192 << 20, Admit: admit}, nil)
		if !errors.Is(err, imagedecode.ErrCorrupt) || len(admitted) != 1 || admitted[0] != imagedecode.DecoderTurbo {
			t.Fatalf("got %v after admitting %v, want corrupt after turbojpeg alone", err, admitted)
		}
	}
}

// CMYK and YCCK JPEGs decode in libjpeg-turbo (never image/jpeg at full
// size), to the colours image/jpeg gives them.
func TestCMYKDecodesInTurbo(t *testing.T) {
	if !turbojpeg.Available() {
		t.Skip("built without libjpeg-turbo")
	}
	for _, c := range imagecorpus.Generate() {
		if c.Name != "jpeg-cmyk" && c.Name != "jpeg-ycck" {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			cfg, err := imagedecode.Inspect(c.Data, imagedecode.Limits{Scans: scanLimits})
			if err != nil {
				t.Fatal(err)
			}
			tj, err := imagedecode.Decode(context.Background(), c.Data, cfg, imagedecode.Options{MinScale: 1}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tj.Release()
			gd, err := imagedecode.Decode(context.Background(), c.Data, cfg, imagedecode.Options{MinScale: 1, PureGo: true}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer gd.Release()
			if tj.Decoder != imagedecode.DecoderTurbo || gd.Decoder != imagedecode.DecoderGo {
				t.Fatalf("decoders %s and %s", tj.Decoder, gd.Decoder)
			}
			worst := 0
			var s1, s2 []byte
			for y := range tj.H {
				a, b := tj.Row(y, 0, tj.W, &s1), gd.Row(y, 0, gd.W, &s2)
				for i := range a {
					worst = max(worst, int(a[i])-int(b[i]), int(b[i])-int(a[i]))
				}
			}
			t.Logf("libjpeg-turbo and image/jpeg differ by up to %d levels", worst)
			if worst > 12 {
				t.Fatalf("libjpeg-turbo and image/jpeg differ by up to %d levels", worst)
			}
		})
	}
}

// A GIF or PNG whose data cannot fill the frame its header declares is
// refused before image/gif or image/png allocates the frame; a small GIF
// frame on a large screen is read without a screen-sized copy.
func TestGIFAndPNGBombs(t *testing.T) {
	le := func(v int) []byte { return []byte{byte(v), byte(v >> 8)} }
	gifOf := func(sw, sh, x, y, w, h int, lzw []byte) []byte {
		b := append([]byte("GIF89a"), le(sw)...)
		b = append(b, le(sh)...)
		b = append(b, 0x80, 0, 0, 255, 0, 0, 0, 0, 255) // global table: red, blue
		b = append(b, 0x2C)
		for _, v := range []int{x, y, w, h} {
			b = append(b, le(v)...)
		}
		b = append(b, 0, 2, byte(len(lzw)))
		return append(append(b, lzw...), 0, 0x3B)
	}
	for name, data := range map[string][]byte{
		"gif 7000x7000 frame": gifOf(7000, 7000, 0, 0, 7000, 7000, []byte{0x4C, 0x01}),
		"png 7000x7000 rgba":  imagecorpus.PNGBomb(7000, 7000),
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := imagedecode.Inspect(data, imagedecode.Limits{})
		runtime.ReadMemStats(&after)
		if !errors.Is(err, imagedecode.ErrCorrupt) || after.TotalAlloc-before.TotalAlloc > 1<<20 {
			t.Errorf("%s: got %v after allocating %d bytes, want corrupt", name, err, after.TotalAlloc-before.TotalAlloc)
		}
	}
	// A 1x1 red frame at (3,2) on a 4000x3000 screen: clear code, index 0, end.
	data := gifOf(4000, 3000, 3, 2, 1, 1, []byte{0x44, 0x01})
	cfg, err := imagedecode.Inspect(data, imagedecode.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if _, n := cfg.Cost(imagedecode.Options{}); n > 2<<20 {
		t.Errorf("estimate %d bytes for a 1x1 frame", n)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	img, err := imagedecode.Decode(context.Background(), data, cfg, imagedecode.Options{Background: [3]uint8{0, 255, 0}}, nil)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Release()
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 || img.W != 4000 || img.H != 3000 {
		t.Fatalf("%dx%d after allocating %d bytes", img.W, img.H, d)
	}
	var s []byte
	if got := string(img.Row(2, 2, 5, &s)); got != "\x00\xff\x00\xff\x00\x00\x00\xff\x00" {
		t.Errorf("row 2, columns 2..4: % x, want background, red, background", got)
	}
	if got := string(img.Row(0, 3, 4, &s)); got != "\x00\xff\x00" {
		t.Errorf("row 0 column 3: % x, want the background", got)
	}
}

// The marker walk takes what both decoders take: fill bytes before a
// marker and junk between segments (image/jpeg skips it; libjpeg-turbo
// warns and image/jpeg decodes it).
func TestMarkerWalkTolerance(t *testing.T) {
	base := imagecorpus.Generate()[0].Data  // jpeg-baseline
	n := 4 + int(base[4])<<8 | int(base[5]) // SOI, then the first segment
	insert := func(at int, b string) []byte {
		return append(append(append([]byte{}, base[:at]...), b...), base[at:]...)
	}
	for name, data := range map[string][]byte{
		"fill bytes":                insert(n, "\xff\xff\xff"),
		"junk between segments":     insert(n, "junk"),
		"fill bytes before the end": insert(len(base)-2, "\xff\xff"),
		"junk after the end":        append(append([]byte{}, base...), "trailing"...),
	} {
		t.Run(name, func(t *testing.T) {
			for dec, err := range decodeBoth(t, data, 0) {
				if err != nil {
					t.Errorf("%s: %v", dec, err)
				}
			}
		})
	}
}
