package preprocessor

import (
	"context"
	"encoding/binary"
	"image/color"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/disintegration/imaging"
	"github.com/x448/float16"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"

	"github.com/lookalike-dev/lookalike/preprocess/internal/imagecorpus"
	"github.com/lookalike-dev/lookalike/preprocess/internal/imagedecode"
	"github.com/lookalike-dev/lookalike/preprocess/internal/reference"
	"github.com/lookalike-dev/lookalike/preprocess/internal/turbojpeg"
)

// probeSpec squashes to 32x32 and keeps 8-bit values (scale 1, mean 0,
// std 1), NHWC, on a black background, so pixels can be read back.
func probeSpec() preprocessv1.Spec {
	return preprocessv1.Spec{Width: 32, Height: 32, ResizeMode: preprocessv1.ResizeSquash, Interpolation: "bilinear",
		Scale: 1, Std: [3]float32{1, 1, 1}, ChannelOrder: "RGB", Layout: "NHWC", DType: "float32", Background: "#000000"}
}

func newProc(t *testing.T, opt Options) *Processor {
	t.Helper()
	if opt.Limits == (imagedecode.Limits{}) {
		opt.Limits = imagedecode.Limits{MaxBytes: 20 << 20, MaxPixels: 50_000_000}
	}
	p, err := New(opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func values(t *testing.T, r Result, spec preprocessv1.Spec) []float32 {
	t.Helper()
	tt := tensorv1.Tensor{DType: DType(spec), Shape: spec.Shape(1), Data: r.Data}
	if err := tt.Validate(); err != nil {
		t.Fatalf("tensor: %v", err)
	}
	if tt.DType == tensorv1.Uint8 {
		v := make([]float32, len(tt.Data))
		for i, l := range tt.Data {
			v[i] = float32(l)
		}
		return v
	}
	if tt.DType == tensorv1.Float16 {
		v := make([]float32, len(tt.Data)/2)
		for i := range v {
			v[i] = float16.Frombits(binary.LittleEndian.Uint16(tt.Data[2*i:])).Float32()
		}
		return v
	}
	v, err := tt.Float32s(nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// decoders runs a test with libjpeg-turbo (when linked) and with Go only.
func decoders() []struct {
	name   string
	pureGo bool
} {
	d := []struct {
		name   string
		pureGo bool
	}{{"go", true}}
	if turbojpeg.Available() {
		d = append(d, struct {
			name   string
			pureGo bool
		}{"turbojpeg", false})
	}
	return d
}

func nearestQuad(r, g, b float32, withBlack bool) int {
	best, bi := math.Inf(1), -1
	cands := append([]color.NRGBA{}, imagecorpus.Quad[:]...)
	if withBlack {
		cands = append(cands, color.NRGBA{0, 0, 0, 255})
	}
	for i, c := range cands {
		d := math.Pow(float64(r)-float64(c.R), 2) + math.Pow(float64(g)-float64(c.G), 2) + math.Pow(float64(b)-float64(c.B), 2)
		if d < best {
			best, bi = d, i
		}
	}
	return bi
}

func TestCorpus(t *testing.T) {
	spec := probeSpec()
	for _, dec := range decoders() {
		p := newProc(t, Options{PureGo: dec.pureGo})
		for _, c := range imagecorpus.Generate() {
			t.Run(dec.name+"/"+c.Name, func(t *testing.T) {
				r, err := p.Process(context.Background(), c.Data, spec)
				if c.WantCode != "" {
					e, ok := apierror.As(err)
					if !ok {
						t.Fatalf("got %v, want error %s", err, c.WantCode)
					}
					if e.Code != c.WantCode || e.Status < 400 || e.Status > 499 || e.Status != preprocessv1.StatusOf(c.WantCode) {
						t.Fatalf("got %d %s (%s), want %d %s", e.Status, e.Code, e.Message, preprocessv1.StatusOf(c.WantCode), c.WantCode)
					}
					return
				}
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				f := r.Facts
				if f.Format != c.Format || f.Orientation != c.Orientation || f.Width != c.Width || f.Height != c.Height || f.Bytes != len(c.Data) {
					t.Fatalf("facts %+v, want format %s orientation %d size %dx%d", f, c.Format, c.Orientation, c.Width, c.Height)
				}
				if len(f.PHash) != 16 {
					t.Fatalf("phash %q is not 16 hex digits", f.PHash)
				}
				v := values(t, r, spec)
				px := func(x, y int) (float32, float32, float32) {
					o := (y*32 + x) * 3
					return v[o], v[o+1], v[o+2]
				}
				switch c.Pattern {
				case "quad", "quad-alpha":
					for q, pt := range [4][2]int{{8, 8}, {24, 8}, {8, 24}, {24, 24}} {
						want := q
						if c.Pattern == "quad-alpha" && q == 1 {
							want = 4 // transparent: the black background
						}
						r, g, b := px(pt[0], pt[1])
						if got := nearestQuad(r, g, b, c.Pattern == "quad-alpha"); got != want {
							t.Errorf("quadrant %d at %v shows (%.0f,%.0f,%.0f), nearest colour %d, want %d", q, pt, r, g, b, got, want)
						}
					}
				case "gray":
					for i := 0; i < len(v); i += 3 {
						if v[i] != v[i+1] || v[i] != v[i+2] {
							t.Fatalf("gray image has colour at %d: %v", i/3, v[i:i+3])
						}
					}
				}
			})
		}
	}
}

// TestCorpusMatchesReference compares every decodable corpus image with
// the reference pipeline (full decode, imaging's orientation and resize of
// the same filter): orientation, alpha and the resampler are checked against
// an independent implementation.
func TestCorpusMatchesReference(t *testing.T) {
	filters := map[string]imaging.ResampleFilter{"bilinear": imaging.Linear, "lanczos3": imaging.Lanczos}
	for _, dec := range decoders() {
		p := newProc(t, Options{PureGo: dec.pureGo})
		for _, c := range imagecorpus.Generate() {
			if c.WantCode != "" {
				continue
			}
			for name, filter := range filters {
				t.Run(dec.name+"/"+c.Name+"/"+name, func(t *testing.T) {
					spec := preprocessv1.ImageNet()
					spec.Interpolation = name
					ref, err := reference.Tensor(c.Data, spec, filter)
					if err != nil {
						t.Fatal(err)
					}
					r, err := p.Process(context.Background(), c.Data, spec)
					if err != nil {
						t.Fatal(err)
					}
					v := values(t, r, spec)
					var sum float64
					for i := range v {
						sum += math.Abs(float64(v[i] - ref[i]))
					}
					// The reference decodes with image/jpeg; libjpeg-turbo's
					// smooth chroma upsampling differs from it at the hard
					// colour edges of the synthetic pattern, so turbojpeg gets
					// more room on JPEGs (real photos: see the bench).
					limit := 0.02
					if !dec.pureGo && c.Format == "jpeg" {
						limit = 0.05
					}
					if e := sum / float64(len(v)); e > limit {
						t.Errorf("mean abs error %.4f against the reference, want <= %.2f", e, limit)
					}
				})
			}
		}
	}
}

func TestBombsDoNotAllocate(t *testing.T) {
	p := newProc(t, Options{})
	for _, c := range imagecorpus.Generate() {
		if !c.Bomb {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := p.Process(context.Background(), c.Data, preprocessv1.ImageNet())
			runtime.ReadMemStats(&after)
			if apierror.CodeOf(err) != c.WantCode {
				t.Fatalf("got %v, want %s", err, c.WantCode)
			}
			if d := after.TotalAlloc - before.TotalAlloc; d > 4<<20 {
				t.Fatalf("refusing the bomb allocated %d bytes, want < 4 MiB", d)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	img := imagecorpus.Generate()[0].Data // jpeg-baseline, 96x64
	tests := []struct {
		name string
		lim  imagedecode.Limits
		code string
	}{
		{"bytes at the limit", imagedecode.Limits{MaxBytes: int64(len(img))}, ""},
		{"bytes over the limit", imagedecode.Limits{MaxBytes: int64(len(img)) - 1}, "image_too_large"},
		{"pixels at the limit", imagedecode.Limits{MaxPixels: 96 * 64}, ""},
		{"pixels over the limit", imagedecode.Limits{MaxPixels: 96*64 - 1}, "dimensions_too_large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newProc(t, Options{Limits: tc.lim})
			_, err := p.Process(context.Background(), img, preprocessv1.ImageNet())
			if got := apierror.CodeOf(err); got != tc.code || (tc.code == "" && err != nil) {
				t.Fatalf("got %v, want code %q", err, tc.code)
			}
		})
	}
}

func TestSpecs(t *testing.T) {
	img := imagecorpus.Generate()[0].Data
	p := newProc(t, Options{})
	base := probeSpec()
	nchw := base
	nchw.Layout = "NCHW"
	bgr := base
	bgr.ChannelOrder = "BGR"
	f16 := base
	f16.DType = "float16"
	u8 := base
	u8.DType = "uint8"
	letter := base
	letter.ResizeMode = preprocessv1.ResizeLetterbox
	letter.Background = "#0000ff"
	crop := base
	crop.ResizeMode, crop.ResizeShorter = preprocessv1.ResizeShorterCrop, 32
	want, err := p.Process(context.Background(), img, base)
	if err != nil {
		t.Fatal(err)
	}
	ref := values(t, want, base)
	// pixel (x,y) channel c of the NHWC/RGB reference
	at := func(x, y, c int) float32 { return ref[(y*32+x)*3+c] }
	tests := []struct {
		name  string
		spec  preprocessv1.Spec
		check func(v []float32) bool
	}{
		{"NCHW is the NHWC data transposed", nchw, func(v []float32) bool {
			return v[0*1024+5*32+7] == at(7, 5, 0) && v[2*1024+20*32+30] == at(30, 20, 2)
		}},
		{"BGR swaps channels", bgr, func(v []float32) bool {
			return v[(5*32+7)*3] == at(7, 5, 2) && v[(5*32+7)*3+2] == at(7, 5, 0)
		}},
		{"float16 rounds the same values", f16, func(v []float32) bool {
			return math.Abs(float64(v[100]-ref[100])) < 0.5
		}},
		{"uint8 holds the levels themselves", u8, func(v []float32) bool {
			for i := range v {
				if v[i] != ref[i] {
					return false
				}
			}
			return true
		}},
		{"letterbox pads top and bottom with the background", letter, func(v []float32) bool {
			// 96x64 in 32x32: 32x21 content, 5 rows of padding above;
			// content row 3 is in the red quadrant
			return v[0] == 0 && v[1] == 0 && v[2] == 255 && v[(31*32+4)*3+2] == 255 && v[(8*32+4)*3] > 150 && v[(8*32+4)*3+2] < 100
		}},
		{"shorter_crop keeps the middle", crop, func(v []float32) bool {
			// 48x32 resized, centre 32 columns: left half red, right half green
			return nearestQuad(v[(4*32+2)*3], v[(4*32+2)*3+1], v[(4*32+2)*3+2], false) == 0 &&
				nearestQuad(v[(4*32+29)*3], v[(4*32+29)*3+1], v[(4*32+29)*3+2], false) == 1
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := p.Process(context.Background(), img, tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if v := values(t, r, tc.spec); !tc.check(v) {
				t.Fatalf("check failed")
			}
		})
	}
	t.Run("invalid spec is invalid_argument", func(t *testing.T) {
		bad := base
		bad.Layout = "CHW"
		_, err := p.Process(context.Background(), img, bad)
		if e, ok := apierror.As(err); !ok || e.Code != apierror.CodeInvalidArgument || e.Status != http.StatusBadRequest {
			t.Fatalf("got %v", err)
		}
	})
}

// A uint8 tensor widened by its consumer (Spec.Widen) is bit for bit the
// float32 tensor preprocess would have sent, in every layout and order.
func TestUint8WidensToFloat32(t *testing.T) {
	imgs := imagecorpus.Generate()
	p := newProc(t, Options{})
	imagenet := preprocessv1.ImageNet()
	bgrNHWC := imagenet
	bgrNHWC.ChannelOrder, bgrNHWC.Layout = "BGR", "NHWC"
	letter := imagenet
	letter.ResizeMode, letter.Background = preprocessv1.ResizeLetterbox, "#336699"
	for _, spec := range []preprocessv1.Spec{imagenet, bgrNHWC, letter} {
		t.Run(spec.ChannelOrder+"/"+spec.Layout+"/"+spec.ResizeMode, func(t *testing.T) {
			u8 := spec
			u8.DType = "uint8"
			checked := 0
			for _, img := range imgs {
				f, err := p.Process(context.Background(), img.Data, spec)
				if err != nil {
					continue // the corpus's bad files
				}
				l, err := p.Process(context.Background(), img.Data, u8)
				if err != nil {
					t.Fatalf("%s: float32 worked, uint8 failed: %v", img.Name, err)
				}
				if len(l.Data)*4 != len(f.Data) {
					t.Fatalf("%s: %d levels for %d float bytes", img.Name, len(l.Data), len(f.Data))
				}
				wide := make([]byte, len(f.Data))
				if err := u8.Widen(wide, l.Data); err != nil {
					t.Fatal(err)
				}
				for i := range wide {
					if wide[i] != f.Data[i] {
						t.Fatalf("%s: byte %d of the widened tensor is %d, the float32 tensor has %d", img.Name, i, wide[i], f.Data[i])
					}
				}
				checked++
			}
			if checked < 5 {
				t.Fatalf("only %d corpus images processed", checked)
			}
		})
	}
}

func TestDeadline(t *testing.T) {
	p := newProc(t, Options{})
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	_, err := p.Process(ctx, imagecorpus.Generate()[0].Data, preprocessv1.ImageNet())
	if apierror.CodeOf(err) != apierror.CodeDeadlineExceeded {
		t.Fatalf("got %v, want deadline_exceeded", err)
	}
}

func TestBatch(t *testing.T) {
	p := newProc(t, Options{Concurrency: 2})
	var good, bad []byte
	for _, c := range imagecorpus.Generate() {
		switch c.Name {
		case "png-rgb8":
			good = c.Data
		case "jpeg-truncated":
			bad = c.Data
		}
	}
	spec := preprocessv1.ImageNet()
	items := []Item{{Data: good}, {Data: bad}, {Data: good}, {Err: apierror.New(413, "image_too_large", "big")}}
	meta, tt := p.ProcessBatch(context.Background(), items, spec)
	if tt == nil || tt.Shape[0] != 2 {
		t.Fatalf("tensor %v, want 2 rows", tt)
	}
	wantRows := []int{0, -1, 1, -1}
	wantCodes := []string{"", "corrupt_image", "", "image_too_large"}
	for i, it := range meta.Items {
		code := ""
		if it.Error != nil {
			code = it.Error.Code
		}
		if it.Index != i || it.Row != wantRows[i] || code != wantCodes[i] {
			t.Errorf("item %d: %+v (error %v), want row %d code %q", i, it, it.Error, wantRows[i], wantCodes[i])
		}
	}
	single, err := p.Process(context.Background(), good, spec)
	if err != nil {
		t.Fatal(err)
	}
	n := len(single.Data)
	if string(tt.Data[:n]) != string(single.Data) || string(tt.Data[n:]) != string(single.Data) {
		t.Fatal("batch rows differ from the single-image result")
	}
}

// sharedDir is ../shared beside the repository, or LOOKALIKE_SHARED.
func sharedDir(t *testing.T) string {
	t.Helper()
	d := os.Getenv("LOOKALIKE_SHARED")
	if d == "" {
		d = filepath.Join("..", "..", "..", "..", "shared")
	}
	if _, err := os.Stat(filepath.Join(d, "catalog")); err != nil {
		t.Fatalf("shared data not found at %s (set LOOKALIKE_SHARED): %v", d, err)
	}
	return d
}

func TestTruncatedCatalogJPEG(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(sharedDir(t), "catalog", "bad", "truncated.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, dec := range decoders() {
		t.Run(dec.name, func(t *testing.T) {
			_, err := newProc(t, Options{PureGo: dec.pureGo}).Process(context.Background(), b, preprocessv1.ImageNet())
			e, ok := apierror.As(err)
			if !ok || e.Code != "corrupt_image" || e.Status != http.StatusUnprocessableEntity {
				t.Fatalf("got %v, want 422 corrupt_image", err)
			}
		})
	}
}

// A decode whose estimate is over the image budget is a 422
// image_too_complex, and decodes wait for their estimated bytes in the
// process-wide decode memory: a request whose deadline passes while it
// waits gives up its place and takes nothing, and the next one is served
// once the memory is back.
func TestDecodeMemory(t *testing.T) {
	spec := preprocessv1.ImageNet()
	cmyk := imagecorpus.Craft(imagecorpus.Crafted{W: 7000, H: 7000, Comps: 4, Adobe: 0, Progressive: true, Sized: true})
	small := imagecorpus.Generate()[0].Data
	for _, dec := range decoders() {
		t.Run(dec.name, func(t *testing.T) {
			p := newProc(t, Options{PureGo: dec.pureGo, DecodeMemory: 64 << 20, ImageMemory: 32 << 20})
			_, err := p.Process(context.Background(), cmyk, spec)
			e, ok := apierror.As(err)
			if !ok || e.Code != preprocessv1.CodeImageTooComplex || e.Status != http.StatusUnprocessableEntity {
				t.Fatalf("got %v, want 422 image_too_complex", err)
			}

			if err := p.mem.Acquire(context.Background(), 64<<20); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			_, err = p.Process(ctx, small, spec)
			if apierror.CodeOf(err) != apierror.CodeDeadlineExceeded {
				t.Fatalf("with the decode memory taken: got %v, want deadline_exceeded", err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := p.Process(context.Background(), small, spec)
				done <- err
			}()
			select {
			case err := <-done:
				t.Fatalf("decoded (%v) while the decode memory was taken", err)
			case <-time.After(50 * time.Millisecond):
			}
			p.mem.Release(64 << 20)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if !p.mem.TryAcquire(64 << 20) {
				t.Fatal("decode memory not all given back")
			}
		})
	}
}

// Every catalog photo and query passes the marker walk and the decode
// budget with the service defaults: the bomb checks cost real images
// nothing.
func TestCatalogWithinDecodeLimits(t *testing.T) {
	p := newProc(t, Options{})
	var files []string
	for _, dir := range []string{"images", "queries"} {
		m, err := filepath.Glob(filepath.Join(sharedDir(t), "catalog", dir, "*"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 50 {
		t.Fatalf("found %d catalog files", len(files))
	}
	var worst int64
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := imagedecode.Inspect(b, p.opt.Limits)
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
			continue
		}
		for _, pureGo := range []bool{false, true} {
			for _, hq := range []float64{p.opt.DecodeRatio, p.opt.HQDecodeRatio, 1e9} { // 1e9: a full-size decode
				dec, n := cfg.Cost(imagedecode.Options{MinScale: hq * 224 / float64(min(cfg.Width, cfg.Height)), PureGo: pureGo})
				if n > p.opt.ImageMemory {
					t.Errorf("%s (%dx%d, %s): %d MiB expected, over the image budget", filepath.Base(f), cfg.Width, cfg.Height, dec, n>>20)
				}
				worst = max(worst, n)
			}
		}
	}
	t.Logf("%d files; the largest decode estimate is %d MiB of %d", len(files), worst>>20, p.opt.ImageMemory>>20)
}

// A request whose deadline passes during a libjpeg-turbo decode stops the
// decode and gives its decode memory back at once.
func TestDeadlineStopsDecode(t *testing.T) {
	if !turbojpeg.Available() {
		t.Skip("built without libjpeg-turbo")
	}
	slow := imagecorpus.Craft(imagecorpus.Crafted{W: 7000, H: 7000, Comps: 1, Adobe: -1, Progressive: true, Sized: true, ACScans: 30})
	p := newProc(t, Options{})
	spec := preprocessv1.ImageNet()
	start := time.Now()
	if _, err := p.Process(context.Background(), slow, spec); err != nil {
		t.Fatal(err)
	}
	full := time.Since(start)
	ctx, cancel := context.WithTimeout(context.Background(), full/10)
	defer cancel()
	start = time.Now()
	_, err := p.Process(ctx, slow, spec)
	stopped := time.Since(start)
	t.Logf("full %v; with a deadline of %v: %v after %v", full, full/10, apierror.CodeOf(err), stopped)
	if apierror.CodeOf(err) != apierror.CodeDeadlineExceeded {
		t.Fatalf("got %v, want deadline_exceeded", err)
	}
	if stopped > full/2 {
		t.Fatalf("answered after %v; the whole decode takes %v", stopped, full)
	}
	if !p.mem.TryAcquire(p.opt.DecodeMemory) {
		t.Fatal("the stopped decode kept its decode memory")
	}
}
