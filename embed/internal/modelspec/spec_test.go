package modelspec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/lookalike-dev/lookalike/embed/internal/testenv"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
)

const defaultSHA = "cc028fe6cae7bc11a4ff53cfc9b79c920e8be65ce33a904ec3e2a8f66d77f95f"

func validSpec() Spec {
	return Spec{
		ID: "m-v1", Version: "1", Path: "mobilenetv2-12-int8.onnx", SHA256: defaultSHA,
		Input:         Input{Name: "input", Shape: []int64{-1, 3, 224, 224}, DType: "float32"},
		Output:        Output{Tap: &Tap{Tensor: "464_quantized"}},
		Dim:           1280,
		Normalization: NormL2,
		Preprocess:    preprocessv1.ImageNet(),
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(s *Spec)
		wantErr string
	}{
		{"valid tap", func(s *Spec) {}, ""},
		{"valid graph output", func(s *Spec) { s.Output = Output{Name: "output"}; s.Dim = 1000 }, ""},
		{"valid centred", func(s *Spec) { s.Normalization = NormL2Center; s.MeanFile = "m.lkt" }, ""},
		{"bad id", func(s *Spec) { s.ID = "Bad ID" }, "id"},
		{"no version", func(s *Spec) { s.Version = "" }, "version"},
		{"no path", func(s *Spec) { s.Path = "" }, "path"},
		{"short sha", func(s *Spec) { s.SHA256 = "abc" }, "sha256"},
		{"no input name", func(s *Spec) { s.Input.Name = "" }, "input.name"},
		{"fixed batch", func(s *Spec) { s.Input.Shape = []int64{1, 3, 224, 224} }, "start with -1"},
		{"dynamic spatial", func(s *Spec) { s.Input.Shape = []int64{-1, 3, -1, 224} }, "static"},
		{"bad dtype", func(s *Spec) { s.Input.DType = "int64" }, "input.dtype"},
		{"both outputs", func(s *Spec) { s.Output.Name = "output" }, "exactly one"},
		{"no output", func(s *Spec) { s.Output = Output{} }, "exactly one"},
		{"empty tap", func(s *Spec) { s.Output.Tap = &Tap{} }, "tap.tensor"},
		{"zero dim", func(s *Spec) { s.Dim = 0 }, "dim"},
		{"unknown normalization", func(s *Spec) { s.Normalization = "pca" }, "normalization"},
		{"centre without mean", func(s *Spec) { s.Normalization = NormL2Center }, "needs mean_file"},
		{"mean without centre", func(s *Spec) { s.MeanFile = "m.lkt" }, "only used"},
		{"bad preprocess", func(s *Spec) { s.Preprocess.Layout = "CHW" }, "preprocess"},
		{"preprocess size mismatch", func(s *Spec) { s.Preprocess.Width = 256; s.Preprocess.ResizeShorter = 256 }, "shape"},
		{"preprocess layout mismatch", func(s *Spec) { s.Preprocess.Layout = "NHWC" }, "shape"},
		{"preprocess dtype mismatch", func(s *Spec) { s.Preprocess.DType = "float16" }, "float16"},
		{"negative batching", func(s *Spec) { s.Batching.MaxBatch = -1 }, "batching"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := validSpec()
			tc.edit(&s)
			err := s.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestParse(t *testing.T) {
	good, err := yaml.Marshal(validSpec())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{"yaml", string(good), ""},
		{"json", `{"id":"m-v1","version":"1","path":"x.onnx","sha256":"` + defaultSHA + `","input":{"name":"input","shape":[-1,3,224,224],"dtype":"float32"},"output":{"name":"output"},"dim":1000,"normalization":"l2","preprocess":` + preprocessv1.ImageNet().Encode() + `}`, ""},
		{"unknown field", string(good) + "\nextra: 1\n", "unknown field"},
		{"not yaml", "{{{", "decoding"},
		{"invalid", "id: x\n", "invalid model spec"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Parse error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestCommittedSpecs loads every spec in embed/models against the real model.
func TestCommittedSpecs(t *testing.T) {
	specs, err := ReadDir(testenv.SpecDir(t))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"mobilenetv2-int8-v1": 1280, "mobilenetv2-int8-logits-v1": 1000}
	got := map[string]bool{}
	for _, s := range specs {
		got[s.ID] = true
		l, err := Load(s, testenv.ModelDir(t))
		if err != nil {
			t.Errorf("loading %s: %v", s.ID, err)
			continue
		}
		if d, ok := want[s.ID]; ok && s.Dim != d {
			t.Errorf("%s: dim %d, want %d", s.ID, s.Dim, d)
		}
		if l.OutputName == "" || len(l.ONNX) == 0 {
			t.Errorf("%s: loaded without output or model bytes", s.ID)
		}
	}
	for id := range want {
		if !got[id] {
			t.Errorf("embed/models lacks %s", id)
		}
	}
}

func TestLoad(t *testing.T) {
	modelDir := testenv.ModelDir(t)
	tmp := t.TempDir()
	mean := make([]float32, 1280)
	mean[3] = 0.5
	if err := WriteMean(filepath.Join(tmp, "mean.lkt"), mean); err != nil {
		t.Fatal(err)
	}
	if err := WriteMean(filepath.Join(tmp, "short.lkt"), mean[:10]); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "junk.lkt"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		edit       func(s *Spec)
		wantOutput string
		wantErr    string
	}{
		{"tap", func(s *Spec) {}, "464_quantized_tap", ""},
		{"graph output", func(s *Spec) { s.Output = Output{Name: "output"}; s.Dim = 1000 }, "output", ""},
		{"centred", func(s *Spec) { s.Normalization = NormL2Center; s.MeanFile = "mean.lkt" }, "464_quantized_tap", ""},
		{"missing file", func(s *Spec) { s.Path = "nope.onnx" }, "", "no such file"},
		{"sha mismatch", func(s *Spec) { s.SHA256 = strings.Repeat("0", 64) }, "", "sha256"},
		{"wrong input name", func(s *Spec) { s.Input.Name = "data" }, "", `no input "data"`},
		{"wrong input dtype", func(s *Spec) { s.Input.DType = "uint8"; s.Preprocess.DType = "float32" }, "", "is float32 in the graph"},
		{"wrong input shape", func(s *Spec) { s.Input.Shape = []int64{-1, 3, 192, 192} }, "", "shape"},
		{"missing graph output", func(s *Spec) { s.Output = Output{Name: "features"} }, "", "no output"},
		{"missing tap tensor", func(s *Spec) { s.Output.Tap.Tensor = "999_quantized" }, "", "no node produces it"},
		{"missing mean", func(s *Spec) { s.Normalization = NormL2Center; s.MeanFile = "none.lkt" }, "", "no such file"},
		{"mean of wrong length", func(s *Spec) { s.Normalization = NormL2Center; s.MeanFile = "short.lkt" }, "", "want float32 [1280]"},
		{"mean not a tensor", func(s *Spec) { s.Normalization = NormL2Center; s.MeanFile = "junk.lkt" }, "", "malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := validSpec()
			s.File = filepath.Join(tmp, "spec.yaml")
			tc.edit(&s)
			l, err := Load(s, modelDir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Load error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if l.OutputName != tc.wantOutput {
				t.Errorf("output %q, want %q", l.OutputName, tc.wantOutput)
			}
			if s.Normalization == NormL2Center && (len(l.Mean) != 1280 || l.Mean[3] != 0.5) {
				t.Errorf("mean not read back: len %d", len(l.Mean))
			}
		})
	}
}

func TestReadDir(t *testing.T) {
	dir := t.TempDir()
	a := validSpec()
	b := validSpec()
	b.ID = "other-v1"
	write := func(name string, s Spec) {
		y, err := yaml.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), y, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("b.yaml", b)
	write("a.yml", a)
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("ignored"), 0o644); err != nil {
		t.Fatal(err)
	}
	specs, err := ReadDir(dir)
	if err != nil || len(specs) != 2 || specs[0].ID != "m-v1" || specs[1].ID != "other-v1" {
		t.Fatalf("ReadDir = %v, %v", specs, err)
	}
	if !Equal(specs[0], a) || Equal(specs[0], specs[1]) {
		t.Error("Equal disagrees with the specs read")
	}
	write("dup.json", a)
	if _, err := ReadDir(dir); err == nil || !strings.Contains(err.Error(), "both") {
		t.Errorf("duplicate id: err = %v", err)
	}
}
