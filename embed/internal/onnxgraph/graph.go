// Package onnxgraph reads and edits ONNX model protobufs in memory: it lists
// a graph's inputs and outputs and makes an internal tensor a graph output
// (a "tap"), dequantizing uint8/int8 tensors on the way. The protobuf types in
// onnx.pb.go are generated from a field-compatible subset of onnx.proto, so a
// decode/encode round trip keeps every field this package does not name.
package onnxgraph

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
)

// ONNX TensorProto.DataType values this package names.
const (
	ElemFloat   = 1
	ElemUint8   = 2
	ElemInt8    = 3
	ElemFloat16 = 10
)

// ElemTypeName names an ONNX element type.
func ElemTypeName(t int32) string {
	switch t {
	case ElemFloat:
		return "float32"
	case ElemUint8:
		return "uint8"
	case ElemInt8:
		return "int8"
	case ElemFloat16:
		return "float16"
	case 0:
		return "unknown"
	}
	return fmt.Sprintf("onnx_type_%d", t)
}

// ErrNotFound is wrapped when a named tensor is not in the graph.
var ErrNotFound = errors.New("tensor not found")

// Model is a decoded ONNX model.
type Model struct {
	pb *ModelProto
}

// Parse decodes an ONNX model.
func Parse(b []byte) (*Model, error) {
	var m ModelProto
	if err := proto.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decoding ONNX model: %w", err)
	}
	if len(m.GetGraph().GetNode()) == 0 {
		return nil, errors.New("decoding ONNX model: no graph nodes")
	}
	return &Model{pb: &m}, nil
}

// Marshal encodes the (possibly edited) model.
func (m *Model) Marshal() ([]byte, error) {
	b, err := proto.Marshal(m.pb)
	if err != nil {
		return nil, fmt.Errorf("encoding ONNX model: %w", err)
	}
	return b, nil
}

// ValueInfo describes a graph input or output.
type ValueInfo struct {
	Name string
	// ElemType is the ONNX element type (ElemFloat, ...), 0 when not declared.
	ElemType int32
	// Shape has -1 for a symbolic or unknown dimension; nil when the rank is unknown.
	Shape []int64
}

func valueInfo(v *ValueInfoProto) ValueInfo {
	out := ValueInfo{Name: v.GetName()}
	tt := v.GetType().GetTensorType()
	if tt == nil {
		return out
	}
	out.ElemType = tt.GetElemType()
	if tt.GetShape() != nil {
		out.Shape = make([]int64, 0, len(tt.GetShape().GetDim()))
		for _, d := range tt.GetShape().GetDim() {
			if x, ok := d.GetValue().(*TensorShapeProto_Dimension_DimValue); ok && x.DimValue > 0 {
				out.Shape = append(out.Shape, x.DimValue)
			} else {
				out.Shape = append(out.Shape, -1)
			}
		}
	}
	return out
}

// Inputs are the graph inputs that are not initializers.
func (m *Model) Inputs() []ValueInfo {
	g := m.pb.GetGraph()
	inits := map[string]bool{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = true
	}
	var out []ValueInfo
	for _, v := range g.GetInput() {
		if !inits[v.GetName()] {
			out = append(out, valueInfo(v))
		}
	}
	return out
}

// Outputs are the graph outputs.
func (m *Model) Outputs() []ValueInfo {
	var out []ValueInfo
	for _, v := range m.pb.GetGraph().GetOutput() {
		out = append(out, valueInfo(v))
	}
	return out
}

// Tap names an internal tensor to expose as a float graph output.
type Tap struct {
	// Tensor is the internal tensor, e.g. "464_quantized".
	Tensor string
	// Scale and ZeroPoint name the quantization parameters of a uint8/int8
	// tensor. When both are empty they are inferred: from the producing
	// QuantizeLinear or QLinear* node, else from the "<base>_quantized" /
	// "<base>_scale" / "<base>_zero_point" naming convention. A float tensor
	// needs neither and passes through unchanged.
	Scale     string
	ZeroPoint string
	// Output is the new graph output's name; empty means "<Tensor>_tap".
	Output string
}

// qlinearOutputParams gives, per QLinear* operator, the input positions of
// its output scale and zero point.
var qlinearOutputParams = map[string][2]int{
	"QLinearConv":              {6, 7},
	"QLinearMatMul":            {6, 7},
	"QLinearAdd":               {6, 7},
	"QLinearMul":               {6, 7},
	"QLinearGlobalAveragePool": {3, 4},
	"QLinearAveragePool":       {3, 4},
	"QLinearLeakyRelu":         {3, 4},
	"QLinearSigmoid":           {3, 4},
	"QLinearSoftmax":           {3, 4},
	"QLinearConcat":            {0, 1},
	"QuantizeLinear":           {1, 2},
}

// AddTap makes t.Tensor readable as a float32 graph output and returns the
// output's name. A uint8/int8 tensor gets a DequantizeLinear node; a float
// tensor that is already a graph output is returned as is.
func (m *Model) AddTap(t Tap) (string, error) {
	g := m.pb.GetGraph()
	if t.Tensor == "" {
		return "", errors.New("tap: no tensor named")
	}
	if (t.Scale == "") != (t.ZeroPoint == "") {
		return "", errors.New("tap: name both scale and zero_point, or neither")
	}
	for _, o := range g.GetOutput() {
		if o.GetName() == t.Tensor && o.GetType().GetTensorType().GetElemType() == ElemFloat {
			return t.Tensor, nil
		}
	}
	producer := m.producer(t.Tensor)
	if producer == nil {
		return "", fmt.Errorf("tap %q: %w: no node produces it", t.Tensor, ErrNotFound)
	}
	names := m.tensorNames()
	out := t.Output
	if out == "" {
		out = t.Tensor + "_tap"
	}
	if names[out] {
		return "", fmt.Errorf("tap %q: output name %q is already used in the graph", t.Tensor, out)
	}

	scale, zp := t.Scale, t.ZeroPoint
	if scale == "" {
		scale, zp = m.inferQuantParams(t.Tensor, producer)
	}
	if scale == "" {
		// Not quantized: expose the tensor itself under the output name via Identity.
		elem := m.declaredElemType(t.Tensor)
		if elem != 0 && elem != ElemFloat {
			return "", fmt.Errorf("tap %q: tensor is %s and no scale/zero point was named or found", t.Tensor, ElemTypeName(elem))
		}
		m.appendNode("Identity", []string{t.Tensor}, out)
		m.appendOutput(out)
		return out, nil
	}
	for _, n := range []string{scale, zp} {
		if !names[n] {
			return "", fmt.Errorf("tap %q: quantization parameter %q: %w", t.Tensor, n, ErrNotFound)
		}
	}
	if zpElem := m.initializerElemType(zp); zpElem != 0 && zpElem != ElemUint8 && zpElem != ElemInt8 {
		return "", fmt.Errorf("tap %q: zero point %q is %s, want uint8 or int8", t.Tensor, zp, ElemTypeName(zpElem))
	}
	if v := m.opsetVersion(""); v < 10 {
		return "", fmt.Errorf("tap %q: DequantizeLinear needs ai.onnx opset >= 10, model imports %d", t.Tensor, v)
	}
	m.appendNode("DequantizeLinear", []string{t.Tensor, scale, zp}, out)
	m.appendOutput(out)
	return out, nil
}

func (m *Model) producer(tensor string) *NodeProto {
	for _, n := range m.pb.GetGraph().GetNode() {
		for _, o := range n.GetOutput() {
			if o == tensor {
				return n
			}
		}
	}
	return nil
}

func (m *Model) inferQuantParams(tensor string, producer *NodeProto) (scale, zp string) {
	if pos, ok := qlinearOutputParams[producer.GetOpType()]; ok && len(producer.GetOutput()) > 0 && producer.GetOutput()[0] == tensor {
		in := producer.GetInput()
		if pos[1] < len(in) && in[pos[0]] != "" && in[pos[1]] != "" {
			return in[pos[0]], in[pos[1]]
		}
	}
	if base, ok := strings.CutSuffix(tensor, "_quantized"); ok {
		inits := m.initializerNames()
		if inits[base+"_scale"] && inits[base+"_zero_point"] {
			return base + "_scale", base + "_zero_point"
		}
	}
	return "", ""
}

func (m *Model) tensorNames() map[string]bool {
	g := m.pb.GetGraph()
	names := m.initializerNames()
	for _, v := range g.GetInput() {
		names[v.GetName()] = true
	}
	for _, n := range g.GetNode() {
		for _, o := range n.GetOutput() {
			names[o] = true
		}
	}
	return names
}

func (m *Model) initializerNames() map[string]bool {
	names := map[string]bool{}
	for _, t := range m.pb.GetGraph().GetInitializer() {
		names[t.GetName()] = true
	}
	return names
}

func (m *Model) initializerElemType(name string) int32 {
	for _, t := range m.pb.GetGraph().GetInitializer() {
		if t.GetName() == name {
			return t.GetDataType()
		}
	}
	return 0
}

func (m *Model) declaredElemType(name string) int32 {
	g := m.pb.GetGraph()
	for _, list := range [][]*ValueInfoProto{g.GetValueInfo(), g.GetOutput(), g.GetInput()} {
		for _, v := range list {
			if v.GetName() == name {
				return v.GetType().GetTensorType().GetElemType()
			}
		}
	}
	return m.initializerElemType(name)
}

func (m *Model) opsetVersion(domain string) int64 {
	for _, o := range m.pb.GetOpsetImport() {
		d := o.GetDomain()
		if d == domain || (domain == "" && d == "ai.onnx") {
			return o.GetVersion()
		}
	}
	return 0
}

func (m *Model) appendNode(op string, inputs []string, output string) {
	g := m.pb.GetGraph()
	g.Node = append(g.Node, &NodeProto{
		Input:  inputs,
		Output: []string{output},
		Name:   proto.String("lookalike_tap_" + output),
		OpType: proto.String(op),
		Domain: proto.String(""),
	})
}

func (m *Model) appendOutput(name string) {
	g := m.pb.GetGraph()
	g.Output = append(g.Output, &ValueInfoProto{
		Name: proto.String(name),
		Type: &TypeProto{Value: &TypeProto_TensorType{TensorType: &TypeProto_Tensor{ElemType: proto.Int32(ElemFloat)}}},
	})
}
