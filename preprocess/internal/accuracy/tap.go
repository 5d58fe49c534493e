package accuracy

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// ONNX protobuf field numbers used here (onnx.proto).
const (
	modelGraph     = 7  // ModelProto.graph
	graphNode      = 1  // GraphProto.node
	graphOutput    = 12 // GraphProto.output
	nodeInput      = 1  // NodeProto.input
	nodeOutput     = 2  // NodeProto.output
	nodeName       = 3  // NodeProto.name
	nodeOpType     = 4  // NodeProto.op_type
	valueName      = 1  // ValueInfoProto.name
	valueType      = 2  // ValueInfoProto.type
	typeTensor     = 1  // TypeProto.tensor_type
	tensorElemType = 1  // TypeProto.Tensor.elem_type
	elemFloat      = 1
)

// Tap makes the quantized tensor q (with its scale and zero point) a float32
// graph output named out, through an appended DequantizeLinear node. It
// edits the protobuf at the wire level and keeps every other byte: for the
// MobileNetV2 int8 model, Tap(m, "464_quantized", "464_scale",
// "464_zero_point", "features") exposes the 1280-d pooled features the
// embed service uses (../shared/models/README.md).
func Tap(model []byte, q, scale, zero, out string) ([]byte, error) {
	var res []byte
	found := false
	for b := model; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("tapping %s: bad ONNX protobuf: %w", q, protowire.ParseError(n))
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, fmt.Errorf("tapping %s: bad ONNX protobuf: %w", q, protowire.ParseError(m))
		}
		if num == modelGraph && typ == protowire.BytesType {
			graph, _ := protowire.ConsumeBytes(b[n:])
			g := append([]byte(nil), graph...)
			var node []byte
			for _, in := range []string{q, scale, zero} {
				node = protowire.AppendTag(node, nodeInput, protowire.BytesType)
				node = protowire.AppendString(node, in)
			}
			node = protowire.AppendTag(node, nodeOutput, protowire.BytesType)
			node = protowire.AppendString(node, out)
			node = protowire.AppendTag(node, nodeName, protowire.BytesType)
			node = protowire.AppendString(node, "tap_"+out)
			node = protowire.AppendTag(node, nodeOpType, protowire.BytesType)
			node = protowire.AppendString(node, "DequantizeLinear")
			g = protowire.AppendTag(g, graphNode, protowire.BytesType)
			g = protowire.AppendBytes(g, node)

			var tt []byte
			tt = protowire.AppendTag(tt, tensorElemType, protowire.VarintType)
			tt = protowire.AppendVarint(tt, elemFloat)
			var tp []byte
			tp = protowire.AppendTag(tp, typeTensor, protowire.BytesType)
			tp = protowire.AppendBytes(tp, tt)
			var vi []byte
			vi = protowire.AppendTag(vi, valueName, protowire.BytesType)
			vi = protowire.AppendString(vi, out)
			vi = protowire.AppendTag(vi, valueType, protowire.BytesType)
			vi = protowire.AppendBytes(vi, tp)
			g = protowire.AppendTag(g, graphOutput, protowire.BytesType)
			g = protowire.AppendBytes(g, vi)

			res = protowire.AppendTag(res, modelGraph, protowire.BytesType)
			res = protowire.AppendBytes(res, g)
			found = true
		} else {
			res = append(res, b[:n+m]...)
		}
		b = b[n+m:]
	}
	if !found {
		return nil, fmt.Errorf("tapping %s: the model has no graph", q)
	}
	return res, nil
}
