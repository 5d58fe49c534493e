package preprocessv1

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"
)

// MaxBatchMeta bounds the JSON part of a batch response.
const MaxBatchMeta = 16 << 20

// MarshalBatch encodes a batch response. t may have zero rows only when
// every item failed; then it is omitted.
func MarshalBatch(meta BatchMeta, t *tensorv1.Tensor) ([]byte, error) {
	mj, err := json.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("encoding batch meta: %w", err)
	}
	size := 4 + len(mj)
	if t != nil {
		if err := t.Validate(); err != nil {
			return nil, fmt.Errorf("encoding batch tensor: %w", err)
		}
		size += tensorv1.HeaderSize(len(t.Shape)) + len(t.Data)
	}
	// One buffer of the final size: the tensor is copied once.
	out := make([]byte, 0, size)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(mj)))
	out = append(out, mj...)
	if t != nil {
		out = tensorv1.AppendHeader(out, t.DType, t.Shape)
		out = append(out, t.Data...)
	}
	return out, nil
}

// UnmarshalBatch decodes a batch response. The tensor is nil when no item
// succeeded. Rows named by the items are checked against the tensor.
func UnmarshalBatch(b []byte) (BatchMeta, *tensorv1.Tensor, error) {
	var meta BatchMeta
	if len(b) < 4 {
		return meta, nil, fmt.Errorf("%w: batch response shorter than its length prefix", tensorv1.ErrFormat)
	}
	n := binary.LittleEndian.Uint32(b)
	if n > MaxBatchMeta || int(n) > len(b)-4 {
		return meta, nil, fmt.Errorf("%w: batch meta length %d out of range", tensorv1.ErrFormat, n)
	}
	if err := json.Unmarshal(b[4:4+n], &meta); err != nil {
		return meta, nil, fmt.Errorf("%w: batch meta: %v", tensorv1.ErrFormat, err)
	}
	rest := b[4+n:]
	rows := 0
	for _, it := range meta.Items {
		if it.Row >= 0 {
			rows++
		}
	}
	if len(rest) == 0 {
		if rows != 0 {
			return meta, nil, fmt.Errorf("%w: %d rows announced, no tensor", tensorv1.ErrFormat, rows)
		}
		return meta, nil, nil
	}
	t, err := tensorv1.Unmarshal(rest)
	if err != nil {
		return meta, nil, err
	}
	if t.Shape[0] != rows {
		return meta, nil, fmt.Errorf("%w: tensor has %d rows, items name %d", tensorv1.ErrFormat, t.Shape[0], rows)
	}
	for _, it := range meta.Items {
		if it.Row >= rows {
			return meta, nil, fmt.Errorf("%w: item %d names row %d of %d", tensorv1.ErrFormat, it.Index, it.Row, rows)
		}
	}
	return meta, &t, nil
}
