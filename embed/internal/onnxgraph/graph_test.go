package onnxgraph

import (
	"errors"
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lookalike-dev/lookalike/embed/internal/testenv"
)

func vi(name string, elem int32, dims ...int64) *ValueInfoProto {
	shape := &TensorShapeProto{}
	for _, d := range dims {
		if d < 0 {
			shape.Dim = append(shape.Dim, &TensorShapeProto_Dimension{Value: &TensorShapeProto_Dimension_DimParam{DimParam: "N"}})
		} else {
			shape.Dim = append(shape.Dim, &TensorShapeProto_Dimension{Value: &TensorShapeProto_Dimension_DimValue{DimValue: d}})
		}
	}
	return &ValueInfoProto{Name: proto.String(name), Type: &TypeProto{Value: &TypeProto_TensorType{TensorType: &TypeProto_Tensor{ElemType: proto.Int32(elem), Shape: shape}}}}
}

func node(op string, in []string, out ...string) *NodeProto {
	return &NodeProto{OpType: proto.String(op), Input: in, Output: out, Name: proto.String(op + "_" + out[0])}
}

func initializer(name string, elem int32) *TensorProto {
	return &TensorProto{Name: proto.String(name), DataType: proto.Int32(elem)}
}

// synthetic builds a small quantized graph:
// x -> QuantizeLinear -> xq -> QLinearConv -> cq -> QLinearGlobalAveragePool -> pq
//
//	-> DequantizeLinear -> y (float, graph output); y -> Relu -> r (float)
func synthetic(t *testing.T, opset int64) []byte {
	t.Helper()
	m := &ModelProto{
		IrVersion:   proto.Int64(7),
		OpsetImport: []*OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(opset)}},
		Graph: &GraphProto{
			Name: proto.String("g"),
			Node: []*NodeProto{
				node("QuantizeLinear", []string{"x", "x_scale", "x_zp"}, "xq"),
				node("QLinearConv", []string{"xq", "x_scale", "x_zp", "w", "w_scale", "w_zp", "c_scale", "c_zp"}, "cq"),
				node("QLinearGlobalAveragePool", []string{"cq", "c_scale", "c_zp", "p_scale", "p_zp"}, "pq"),
				node("DequantizeLinear", []string{"pq", "p_scale", "p_zp"}, "y"),
				node("Relu", []string{"y"}, "r"),
				node("Cast", []string{"r"}, "i"),
				node("Identity", []string{"i8src"}, "named_quantized"),
			},
			Initializer: []*TensorProto{
				initializer("x_scale", ElemFloat), initializer("x_zp", ElemUint8),
				initializer("w", ElemUint8), initializer("w_scale", ElemFloat), initializer("w_zp", ElemUint8),
				initializer("c_scale", ElemFloat), initializer("c_zp", ElemUint8),
				initializer("p_scale", ElemFloat), initializer("p_zp", ElemInt8),
				initializer("named_scale", ElemFloat), initializer("named_zero_point", ElemUint8),
				initializer("bad_zp", ElemFloat), initializer("i8src", ElemUint8),
			},
			Input:     []*ValueInfoProto{vi("x", ElemFloat, -1, 3, 8, 8), vi("w", ElemUint8, 4, 3, 1, 1)},
			Output:    []*ValueInfoProto{vi("y", ElemFloat, -1, 4, 1, 1)},
			ValueInfo: []*ValueInfoProto{vi("i", 6)},
		},
	}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestInputsOutputs(t *testing.T) {
	m, err := Parse(synthetic(t, 13))
	if err != nil {
		t.Fatal(err)
	}
	in := m.Inputs()
	if len(in) != 1 || in[0].Name != "x" || in[0].ElemType != ElemFloat || !equal(in[0].Shape, []int64{-1, 3, 8, 8}) {
		t.Errorf("inputs = %+v, want only x float [-1 3 8 8] (w is an initializer)", in)
	}
	out := m.Outputs()
	if len(out) != 1 || out[0].Name != "y" {
		t.Errorf("outputs = %+v", out)
	}
}

func TestAddTap(t *testing.T) {
	tests := []struct {
		name     string
		opset    int64
		tap      Tap
		wantOut  string
		wantOp   string
		wantIn   []string
		wantErr  string
		sentinel error
	}{
		{name: "QLinearGlobalAveragePool output infers y_scale/y_zp", opset: 13, tap: Tap{Tensor: "pq"}, wantOut: "pq_tap", wantOp: "DequantizeLinear", wantIn: []string{"pq", "p_scale", "p_zp"}},
		{name: "QLinearConv output infers positions 6 and 7", opset: 13, tap: Tap{Tensor: "cq"}, wantOut: "cq_tap", wantOp: "DequantizeLinear", wantIn: []string{"cq", "c_scale", "c_zp"}},
		{name: "QuantizeLinear output", opset: 13, tap: Tap{Tensor: "xq", Output: "features"}, wantOut: "features", wantOp: "DequantizeLinear", wantIn: []string{"xq", "x_scale", "x_zp"}},
		{name: "naming convention", opset: 13, tap: Tap{Tensor: "named_quantized"}, wantOut: "named_quantized_tap", wantOp: "DequantizeLinear", wantIn: []string{"named_quantized", "named_scale", "named_zero_point"}},
		{name: "explicit scale and zero point", opset: 13, tap: Tap{Tensor: "cq", Scale: "p_scale", ZeroPoint: "p_zp"}, wantOut: "cq_tap", wantOp: "DequantizeLinear", wantIn: []string{"cq", "p_scale", "p_zp"}},
		{name: "float internal tensor passes through", opset: 13, tap: Tap{Tensor: "r"}, wantOut: "r_tap", wantOp: "Identity", wantIn: []string{"r"}},
		{name: "float graph output is returned as is", opset: 13, tap: Tap{Tensor: "y"}, wantOut: "y"},
		{name: "unknown tensor", opset: 13, tap: Tap{Tensor: "nope"}, wantErr: "no node produces it", sentinel: ErrNotFound},
		{name: "missing scale", opset: 13, tap: Tap{Tensor: "cq", Scale: "nope", ZeroPoint: "c_zp"}, wantErr: `"nope"`, sentinel: ErrNotFound},
		{name: "scale without zero point", opset: 13, tap: Tap{Tensor: "cq", Scale: "c_scale"}, wantErr: "both"},
		{name: "zero point of the wrong type", opset: 13, tap: Tap{Tensor: "cq", Scale: "c_scale", ZeroPoint: "bad_zp"}, wantErr: "want uint8 or int8"},
		{name: "non-float tensor without quantization", opset: 13, tap: Tap{Tensor: "i"}, wantErr: "no scale/zero point"},
		{name: "output name clash", opset: 13, tap: Tap{Tensor: "pq", Output: "r"}, wantErr: "already used"},
		{name: "opset too old for DequantizeLinear", opset: 9, tap: Tap{Tensor: "pq"}, wantErr: "opset >= 10"},
		{name: "no tensor", opset: 13, tap: Tap{}, wantErr: "no tensor"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse(synthetic(t, tc.opset))
			if err != nil {
				t.Fatal(err)
			}
			nodes := len(m.pb.Graph.Node)
			got, err := m.AddTap(tc.tap)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("AddTap error = %v, want one containing %q", err, tc.wantErr)
				}
				if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
					t.Errorf("error %v does not wrap %v", err, tc.sentinel)
				}
				if len(m.pb.Graph.Node) != nodes {
					t.Errorf("a failed tap changed the graph")
				}
				return
			}
			if err != nil {
				t.Fatalf("AddTap: %v", err)
			}
			if got != tc.wantOut {
				t.Errorf("output = %q, want %q", got, tc.wantOut)
			}
			if tc.wantOp == "" {
				if len(m.pb.Graph.Node) != nodes {
					t.Errorf("tapping a graph output added nodes")
				}
				return
			}
			// Round trip through the wire and look at the added node and output.
			b, err := m.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			m2, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			last := m2.pb.Graph.Node[len(m2.pb.Graph.Node)-1]
			if last.GetOpType() != tc.wantOp || !equalS(last.GetInput(), tc.wantIn) || !equalS(last.GetOutput(), []string{tc.wantOut}) {
				t.Errorf("added node = %v, want %s(%v) -> %s", last, tc.wantOp, tc.wantIn, tc.wantOut)
			}
			outs := m2.Outputs()
			lo := outs[len(outs)-1]
			if lo.Name != tc.wantOut || lo.ElemType != ElemFloat {
				t.Errorf("last graph output = %+v, want %s float", lo, tc.wantOut)
			}
		})
	}
}

func TestParseRejectsGarbage(t *testing.T) {
	for _, b := range [][]byte{[]byte("not a model"), {}, {0x3a, 0x00}} {
		if _, err := Parse(b); err == nil {
			t.Errorf("Parse(%q) succeeded", b)
		}
	}
}

// TestDefaultModelTap checks the rewrite on the real MobileNetV2 int8 model:
// 464_quantized is produced by QLinearGlobalAveragePool, and fields this
// package does not model (node attributes, initializer data) survive.
func TestDefaultModelTap(t *testing.T) {
	b, err := os.ReadFile(testenv.ModelPath(t))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if in := m.Inputs(); len(in) != 1 || in[0].Name != "input" || !equal(in[0].Shape, []int64{-1, 3, 224, 224}) {
		t.Fatalf("inputs = %+v", in)
	}
	out, err := m.AddTap(Tap{Tensor: "464_quantized"})
	if err != nil {
		t.Fatal(err)
	}
	last := m.pb.Graph.Node[len(m.pb.Graph.Node)-1]
	if out != "464_quantized_tap" || !equalS(last.GetInput(), []string{"464_quantized", "464_scale", "464_zero_point"}) {
		t.Fatalf("tap node = %v, output %q", last, out)
	}
	nb, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// The edit adds one small node and one output: the rest is byte-for-byte kept.
	if d := len(nb) - len(b); d <= 0 || d > 200 {
		t.Errorf("tapped model is %d bytes, original %d: the round trip lost or added data", len(nb), len(b))
	}
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func equalS(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") }
