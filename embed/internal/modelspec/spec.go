// Package modelspec reads model spec files (YAML or JSON, one model each),
// checks them, and loads a model: the ONNX file verified against its sha256
// and matched to the declared input, the output tap applied in memory, and
// the mean vector for centring read.
package modelspec

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/lookalike-dev/lookalike/embed/internal/onnxgraph"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"
)

// Normalizations.
const (
	NormL2       = "l2"
	NormL2Center = "l2+center"
)

// Spec is one model spec file.
type Spec struct {
	// ID names the vector space (name plus version), e.g. mobilenetv2-int8-v1.
	ID string `json:"id"`
	// Version of the model inside the space's name, e.g. "1".
	Version     string `json:"version"`
	Description string `json:"description,omitempty"`
	// Path is the ONNX file; a relative path is under the model folder (MODEL_DIR).
	Path string `json:"path"`
	// SHA256 of the ONNX file, hex; loading fails on a mismatch.
	SHA256 string `json:"sha256"`
	Input  Input  `json:"input"`
	Output Output `json:"output"`
	// Dim is the embedding dimension: the output's values per item.
	Dim int `json:"dim"`
	// Normalization is l2 or l2+center (subtract MeanFile's vector, then L2).
	Normalization string `json:"normalization"`
	// MeanFile is a tensorv1 float32 [Dim] file (made by embed-calibrate);
	// a relative path is next to the spec file. Required by l2+center.
	MeanFile string `json:"mean_file,omitempty"`
	// Preprocess is what preprocess must do to an image for this model.
	Preprocess preprocessv1.Spec `json:"preprocess"`
	// Batching overrides the service's batching defaults for this model.
	Batching Batching `json:"batching,omitzero"`

	// File is the spec file it was read from (not part of the file).
	File string `json:"-"`
}

// Input is the graph input the images are fed to.
type Input struct {
	Name string `json:"name"`
	// Shape has -1 for the batch dimension, e.g. [-1, 3, 224, 224].
	Shape []int64 `json:"shape"`
	// DType is float32, float16 or uint8.
	DType string `json:"dtype"`
}

// Output is either a graph output (Name) or an internal tensor (Tap).
type Output struct {
	Name string `json:"name,omitempty"`
	Tap  *Tap   `json:"tap,omitempty"`
}

// Tap names an internal tensor; Scale and ZeroPoint are inferred when empty.
type Tap struct {
	Tensor    string `json:"tensor"`
	Scale     string `json:"scale,omitempty"`
	ZeroPoint string `json:"zero_point,omitempty"`
}

// Batching settings; zero values take the service defaults.
type Batching struct {
	MaxBatch int `json:"max_batch,omitempty"`
	// MaxDelayMicros is how long a batch waits to fill, in microseconds.
	MaxDelayMicros int `json:"max_delay_us,omitempty"`
	// QueueImages bounds the images waiting for this model.
	QueueImages int `json:"queue_images,omitempty"`
}

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// Parse decodes a spec (YAML or JSON), rejecting unknown fields, and validates it.
func Parse(b []byte) (Spec, error) {
	var s Spec
	if err := yaml.UnmarshalStrict(b, &s); err != nil {
		return Spec{}, fmt.Errorf("decoding model spec: %w", err)
	}
	return s, s.Validate()
}

// Validate checks the spec on its own (not against the model file).
func (s Spec) Validate() error {
	var errs []string
	add := func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) }
	if !idPattern.MatchString(s.ID) {
		add("id %q must be 1-63 of [a-z0-9._-], starting with a letter or digit", s.ID)
	}
	if s.Version == "" {
		add("version is required")
	}
	if s.Path == "" {
		add("path is required")
	}
	if d, err := hex.DecodeString(s.SHA256); err != nil || len(d) != sha256.Size {
		add("sha256 %q is not 64 hex digits", s.SHA256)
	}
	if s.Input.Name == "" {
		add("input.name is required")
	}
	if len(s.Input.Shape) < 2 || s.Input.Shape[0] != -1 {
		add("input.shape %v must start with -1 (the batch) and have at least 2 dims", s.Input.Shape)
	}
	for _, d := range s.Input.Shape[min(1, len(s.Input.Shape)):] {
		if d < 1 {
			add("input.shape %v must be static apart from the batch", s.Input.Shape)
			break
		}
	}
	dt, err := tensorv1.ParseDType(s.Input.DType)
	if err != nil || s.Input.DType == "" {
		add("input.dtype %q is not float32, float16 or uint8", s.Input.DType)
	}
	if (s.Output.Name == "") == (s.Output.Tap == nil) {
		add("output needs exactly one of name or tap")
	}
	if s.Output.Tap != nil && s.Output.Tap.Tensor == "" {
		add("output.tap.tensor is required")
	}
	if s.Dim < 1 || s.Dim > 65536 {
		add("dim %d not in 1..65536", s.Dim)
	}
	switch s.Normalization {
	case NormL2:
		if s.MeanFile != "" {
			add("mean_file is only used with normalization l2+center")
		}
	case NormL2Center:
		if s.MeanFile == "" {
			add("normalization l2+center needs mean_file")
		}
	default:
		add("normalization %q is not l2 or l2+center", s.Normalization)
	}
	if err := s.Preprocess.Validate(); err != nil {
		add("preprocess: %v", err)
	} else if len(s.Input.Shape) >= 2 {
		want := s.Preprocess.Shape(1)[1:]
		got := s.Input.Shape[1:]
		if !slices.Equal(toInt64(want), got) {
			add("preprocess makes items of shape %v, input.shape wants %v", want, got)
		}
		if pdt, _ := tensorv1.ParseDType(s.Preprocess.DType); err == nil && pdt != dt {
			add("preprocess makes %s, input.dtype is %s", s.Preprocess.DType, s.Input.DType)
		}
	}
	if s.Batching.MaxBatch < 0 || s.Batching.MaxDelayMicros < 0 || s.Batching.QueueImages < 0 {
		add("batching values must not be negative")
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid model spec %q: %s", s.ID, strings.Join(errs, "; "))
	}
	return nil
}

func toInt64(v []int) []int64 {
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = int64(x)
	}
	return out
}

// ItemBytes is the byte size of one input item.
func (s Spec) ItemBytes() int {
	dt, _ := tensorv1.ParseDType(s.Input.DType)
	n := dt.Size()
	for _, d := range s.Input.Shape[1:] {
		n *= int(d)
	}
	return n
}

// InputDType is the input element type.
func (s Spec) InputDType() tensorv1.DType {
	dt, _ := tensorv1.ParseDType(s.Input.DType)
	return dt
}

// Takes says whether the model takes a tensor of dtype d on the wire: its
// input dtype, or uint8 levels (preprocessv1 dtype "uint8") when it takes
// float32, which embed widens through the preprocess spec.
func (s Spec) Takes(d tensorv1.DType) bool {
	return d == s.InputDType() || (d == tensorv1.Uint8 && s.InputDType() == tensorv1.Float32)
}

// WireDTypes lists the dtypes besides the input dtype that Takes accepts,
// as embedv1.ModelSpec publishes them: uint8 for a float32 model.
func (s Spec) WireDTypes() []string {
	if s.InputDType() == tensorv1.Float32 {
		return []string{tensorv1.Uint8.String()}
	}
	return nil
}

// ReadFile reads and validates one spec file.
func ReadFile(path string) (Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Spec{}, fmt.Errorf("reading model spec: %w", err)
	}
	s, err := Parse(b)
	if err != nil {
		return Spec{}, fmt.Errorf("%s: %w", path, err)
	}
	s.File = path
	return s, nil
}

// IsSpecFile reports whether a file name looks like a spec (.yaml, .yml, .json).
func IsSpecFile(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// ReadDir reads every spec file in dir, sorted by id. Duplicate ids are an error.
func ReadDir(dir string) ([]Spec, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading model specs: %w", err)
	}
	var specs []Spec
	var errs []error
	seen := map[string]string{}
	for _, e := range ents {
		if e.IsDir() || !IsSpecFile(e.Name()) {
			continue
		}
		s, err := ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, ok := seen[s.ID]; ok {
			errs = append(errs, fmt.Errorf("model id %q is in both %s and %s", s.ID, prev, s.File))
			continue
		}
		seen[s.ID] = s.File
		specs = append(specs, s)
	}
	sort.Slice(specs, func(i, j int) bool { return specs[i].ID < specs[j].ID })
	return specs, errors.Join(errs...)
}

// Loaded is a model ready for a session: the (tapped) ONNX bytes, the output
// to read, and the mean vector when centring.
type Loaded struct {
	Spec Spec
	// ONNX is the model to create a session from, tap applied.
	ONNX []byte
	// OutputName is the graph output holding the embedding.
	OutputName string
	// Mean is subtracted before L2 normalisation (nil: no centring).
	Mean []float32
}

// Load reads the model file (relative paths under modelDir), checks its
// sha256 and its input against the spec, applies the tap and reads the mean.
func Load(s Spec, modelDir string) (Loaded, error) {
	path := s.Path
	if !filepath.IsAbs(path) {
		path = filepath.Join(modelDir, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Loaded{}, fmt.Errorf("loading model %s: %w", s.ID, err)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); !strings.EqualFold(got, s.SHA256) {
		return Loaded{}, fmt.Errorf("loading model %s: %s has sha256 %s, spec says %s", s.ID, path, got, s.SHA256)
	}
	g, err := onnxgraph.Parse(b)
	if err != nil {
		return Loaded{}, fmt.Errorf("loading model %s: %w", s.ID, err)
	}
	if err := checkInput(s, g.Inputs()); err != nil {
		return Loaded{}, fmt.Errorf("loading model %s: %w", s.ID, err)
	}
	l := Loaded{Spec: s, ONNX: b, OutputName: s.Output.Name}
	if s.Output.Tap != nil {
		out, err := g.AddTap(onnxgraph.Tap{Tensor: s.Output.Tap.Tensor, Scale: s.Output.Tap.Scale, ZeroPoint: s.Output.Tap.ZeroPoint})
		if err != nil {
			return Loaded{}, fmt.Errorf("loading model %s: %w", s.ID, err)
		}
		if l.ONNX, err = g.Marshal(); err != nil {
			return Loaded{}, fmt.Errorf("loading model %s: %w", s.ID, err)
		}
		l.OutputName = out
	} else if !slices.ContainsFunc(g.Outputs(), func(v onnxgraph.ValueInfo) bool { return v.Name == s.Output.Name }) {
		return Loaded{}, fmt.Errorf("loading model %s: graph has no output %q (use output.tap for an internal tensor)", s.ID, s.Output.Name)
	}
	if s.Normalization == NormL2Center {
		if l.Mean, err = ReadMean(s.meanPath(), s.Dim); err != nil {
			return Loaded{}, fmt.Errorf("loading model %s: %w", s.ID, err)
		}
	}
	return l, nil
}

func (s Spec) meanPath() string {
	if filepath.IsAbs(s.MeanFile) || s.File == "" {
		return s.MeanFile
	}
	return filepath.Join(filepath.Dir(s.File), s.MeanFile)
}

func checkInput(s Spec, inputs []onnxgraph.ValueInfo) error {
	var names []string
	for _, in := range inputs {
		names = append(names, in.Name)
		if in.Name != s.Input.Name {
			continue
		}
		if in.ElemType != 0 && onnxgraph.ElemTypeName(in.ElemType) != s.Input.DType {
			return fmt.Errorf("input %q is %s in the graph, spec says %s", in.Name, onnxgraph.ElemTypeName(in.ElemType), s.Input.DType)
		}
		if in.Shape != nil {
			if len(in.Shape) != len(s.Input.Shape) {
				return fmt.Errorf("input %q has shape %v in the graph, spec says %v", in.Name, in.Shape, s.Input.Shape)
			}
			for i, d := range in.Shape {
				if d != -1 && d != s.Input.Shape[i] && !(i == 0 && d >= 1) {
					return fmt.Errorf("input %q has shape %v in the graph, spec says %v", in.Name, in.Shape, s.Input.Shape)
				}
			}
			if in.Shape[0] != -1 {
				return fmt.Errorf("input %q has a fixed batch size %d: dynamic batching needs a dynamic first dimension", in.Name, in.Shape[0])
			}
		}
		if len(inputs) != 1 {
			return fmt.Errorf("graph has %d inputs %v: only single-input models are supported", len(inputs), names)
		}
		return nil
	}
	return fmt.Errorf("graph has no input %q (inputs: %v)", s.Input.Name, names)
}

// ReadMean reads a tensorv1 float32 vector of dim values.
func ReadMean(path string, dim int) ([]float32, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading mean vector: %w", err)
	}
	t, err := tensorv1.Unmarshal(b)
	if err != nil {
		return nil, fmt.Errorf("reading mean vector %s: %w", path, err)
	}
	if t.DType != tensorv1.Float32 || tensorv1.Elements(t.Shape) != dim {
		return nil, fmt.Errorf("mean vector %s is %s %v, want float32 [%d]", path, t.DType, t.Shape, dim)
	}
	return t.Float32s(nil)
}

// WriteMean writes a mean vector as a tensorv1 float32 [len(mean)] file.
func WriteMean(path string, mean []float32) error {
	b, err := tensorv1.Marshal(tensorv1.FromFloat32([]int{len(mean)}, mean))
	if err != nil {
		return fmt.Errorf("encoding mean vector: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("writing mean vector: %w", err)
	}
	return nil
}

// Equal reports whether two specs describe the same loaded model (used by
// reload to leave unchanged models alone).
func Equal(a, b Spec) bool {
	ja, err1 := yaml.Marshal(a)
	jb, err2 := yaml.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}
