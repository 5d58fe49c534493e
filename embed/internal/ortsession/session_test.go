//go:build cgo

package ortsession

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/lookalike-dev/lookalike/embed/internal/onnxgraph"
	"github.com/lookalike-dev/lookalike/embed/internal/testenv"
)

var (
	rtOnce sync.Once
	rt     *Runtime
	rtErr  error
)

// runtime loads ONNX Runtime once per test binary; a missing library fails.
func runtime(t *testing.T) *Runtime {
	t.Helper()
	lib := testenv.ORTLib(t)
	rtOnce.Do(func() { rt, rtErr = NewRuntime(lib) })
	if rtErr != nil {
		t.Fatalf("loading ONNX Runtime: %v", rtErr)
	}
	return rt
}

func modelBytes(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(testenv.ModelPath(t))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tapped(t *testing.T, tensor string) ([]byte, string) {
	t.Helper()
	m, err := onnxgraph.Parse(modelBytes(t))
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.AddTap(onnxgraph.Tap{Tensor: tensor})
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b, out
}

func opts(output, provider string) SessionOptions {
	return SessionOptions{Provider: provider, InputName: "input", InputDType: "float32", InputShape: []int64{3, 224, 224}, OutputName: output, IntraOpThreads: 2, InterOpThreads: 1}
}

// images makes n pseudo-images with ImageNet-normalised statistics.
func images(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, 0, n*3*224*224*4)
	for range n * 3 * 224 * 224 {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(r.NormFloat64())))
	}
	return b
}

func TestTapKeepsLogitsAndGivesFeatures(t *testing.T) {
	r := runtime(t)
	orig, err := r.NewSession(modelBytes(t), opts("output", ProviderCPU))
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	tb, featOut := tapped(t, "464_quantized")
	logits, err := r.NewSession(tb, opts("output", ProviderCPU))
	if err != nil {
		t.Fatal(err)
	}
	defer logits.Close()
	feats, err := r.NewSession(tb, opts(featOut, ProviderCPU))
	if err != nil {
		t.Fatal(err)
	}
	defer feats.Close()

	const n = 3
	in := images(n, 1)
	want, wdim, err := orig.Run(in, n)
	if err != nil {
		t.Fatal(err)
	}
	got, gdim, err := logits.Run(in, n)
	if err != nil {
		t.Fatal(err)
	}
	if wdim != 1000 || gdim != 1000 {
		t.Fatalf("logit dims %d and %d, want 1000", wdim, gdim)
	}
	for i := range want {
		if math.Abs(float64(want[i]-got[i])) > 1e-6 {
			t.Fatalf("logit %d: tapped model gives %v, original %v", i, got[i], want[i])
		}
	}

	f, fdim, err := feats.Run(in, n)
	if err != nil {
		t.Fatal(err)
	}
	if fdim != 1280 {
		t.Fatalf("features are %d-d, want 1280", fdim)
	}
	for row := range n {
		positive := 0
		for _, v := range f[row*fdim : (row+1)*fdim] {
			if v < 0 || math.IsNaN(float64(v)) {
				t.Fatalf("row %d has feature %v: want non-negative", row, v)
			}
			if v > 0 {
				positive++
			}
		}
		if positive < 100 {
			t.Errorf("row %d has only %d positive features of 1280", row, positive)
		}
	}
	// Different images give different features.
	same := true
	for i := range fdim {
		if f[i] != f[fdim+i] {
			same = false
			break
		}
	}
	if same {
		t.Error("two different inputs gave identical features")
	}
}

func TestBatchEqualsSingles(t *testing.T) {
	r := runtime(t)
	tb, featOut := tapped(t, "464_quantized")
	s, err := r.NewSession(tb, opts(featOut, ProviderCPU))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 4
	in := images(n, 2)
	batch, dim, err := s.Run(in, n)
	if err != nil {
		t.Fatal(err)
	}
	item := s.ItemBytes()
	for i := range n {
		one, _, err := s.Run(in[i*item:(i+1)*item], 1)
		if err != nil {
			t.Fatal(err)
		}
		for j := range dim {
			if math.Abs(float64(one[j]-batch[i*dim+j])) > 1e-5 {
				t.Fatalf("item %d feature %d: alone %v, in a batch %v", i, j, one[j], batch[i*dim+j])
			}
		}
	}
}

func TestProviders(t *testing.T) {
	// The npm library is the CPU build: GPU providers must fail when asked for
	// by name, and auto must fall back to CPU. EMBED_TEST_GPU=1 flips this on
	// a GPU machine with the GPU build.
	gpu := os.Getenv("EMBED_TEST_GPU") == "1"
	r := runtime(t)
	tests := []struct {
		provider string
		want     string // provider got; "" means an error
	}{
		{ProviderCPU, ProviderCPU},
		{ProviderAuto, map[bool]string{false: ProviderCPU, true: ProviderTensorRT}[gpu]},
		{ProviderCUDA, map[bool]string{false: "", true: ProviderCUDA}[gpu]},
		{ProviderTensorRT, map[bool]string{false: "", true: ProviderTensorRT}[gpu]},
		{"opencl", ""},
	}
	for _, tc := range tests {
		t.Run(tc.provider, func(t *testing.T) {
			s, err := r.NewSession(modelBytes(t), opts("output", tc.provider))
			if tc.want == "" {
				if err == nil {
					s.Close()
					t.Fatalf("provider %s: session created, want an error", tc.provider)
				}
				if tc.provider != "opencl" && !strings.Contains(err.Error(), tc.provider) {
					t.Errorf("error %v does not name %s", err, tc.provider)
				}
				return
			}
			if err != nil {
				t.Fatalf("provider %s: %v", tc.provider, err)
			}
			defer s.Close()
			if s.Provider() != tc.want {
				t.Errorf("provider %s ran on %s, want %s", tc.provider, s.Provider(), tc.want)
			}
			if _, _, err := s.Run(images(1, 3), 1); err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
}

func TestRunRejectsBadInput(t *testing.T) {
	r := runtime(t)
	s, err := r.NewSession(modelBytes(t), opts("output", ProviderCPU))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct {
		name string
		in   []byte
		n    int
	}{
		{"short", images(1, 1)[:100], 1},
		{"count mismatch", images(2, 1), 1},
		{"zero items", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := s.Run(tc.in, tc.n); err == nil {
				t.Error("Run succeeded")
			}
		})
	}
}

func TestSessionOptionsValidate(t *testing.T) {
	base := opts("output", ProviderCPU)
	bad := []func(o *SessionOptions){
		func(o *SessionOptions) { o.Provider = "gpu" },
		func(o *SessionOptions) { o.InputName = "" },
		func(o *SessionOptions) { o.InputShape = []int64{3, -1, 224} },
		func(o *SessionOptions) { o.InputDType = "int64" },
	}
	for i, f := range bad {
		o := base
		f(&o)
		if _, err := runtime(t).NewSession(modelBytes(t), o); err == nil {
			t.Errorf("case %d: session created from invalid options", i)
		}
	}
}
