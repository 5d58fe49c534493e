// Package tensorv1 is the binary tensor wire format between preprocess and
// embed (media type application/vnd.lookalike.tensor.v1).
//
// Layout, all integers little-endian:
//
//	offset size  field
//	0      4     magic "LKT1"
//	4      1     dtype (1 float32, 2 float16, 3 uint8)
//	5      1     rank (1..8)
//	6      2     reserved, must be 0
//	8      4*r   dims, uint32 each, all >= 1
//	8+4r   ...   data, row-major, exactly prod(dims)*size(dtype) bytes
//
// The decoder checks every length before it allocates, so a hostile header
// cannot make it allocate more than the body it was given.
package tensorv1

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// MediaType is the Content-Type of an encoded tensor.
const MediaType = "application/vnd.lookalike.tensor.v1"

// Magic starts every encoded tensor.
const Magic = "LKT1"

// MaxRank bounds the number of dimensions.
const MaxRank = 8

// DType is an element type.
type DType uint8

// Element types.
const (
	Float32 DType = 1
	Float16 DType = 2
	Uint8   DType = 3
)

// Size is the byte size of one element, 0 for an unknown dtype.
func (d DType) Size() int {
	switch d {
	case Float32:
		return 4
	case Float16:
		return 2
	case Uint8:
		return 1
	}
	return 0
}

func (d DType) String() string {
	switch d {
	case Float32:
		return "float32"
	case Float16:
		return "float16"
	case Uint8:
		return "uint8"
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// ParseDType maps "float32", "float16" and "uint8" to a DType.
func ParseDType(s string) (DType, error) {
	switch s {
	case "float32", "":
		return Float32, nil
	case "float16":
		return Float16, nil
	case "uint8":
		return Uint8, nil
	}
	return 0, fmt.Errorf("unknown dtype %q", s)
}

// Tensor is a dense row-major tensor whose elements are kept as
// little-endian bytes, so it moves between processes without conversion.
type Tensor struct {
	DType DType
	Shape []int
	Data  []byte
}

// ErrFormat is wrapped by every decoding error.
var ErrFormat = errors.New("malformed tensor")

// Elements is the product of the shape, or -1 on overflow or a bad dim.
func Elements(shape []int) int {
	n := 1
	for _, d := range shape {
		if d < 1 || d > math.MaxInt32 {
			return -1
		}
		if n > math.MaxInt/d {
			return -1
		}
		n *= d
	}
	return n
}

// HeaderSize is the encoded header size for a rank.
func HeaderSize(rank int) int { return 8 + 4*rank }

// Validate checks that the shape and data agree.
func (t Tensor) Validate() error {
	if t.DType.Size() == 0 {
		return fmt.Errorf("%w: unknown dtype %d", ErrFormat, t.DType)
	}
	if len(t.Shape) < 1 || len(t.Shape) > MaxRank {
		return fmt.Errorf("%w: rank %d not in 1..%d", ErrFormat, len(t.Shape), MaxRank)
	}
	n := Elements(t.Shape)
	if n < 0 {
		return fmt.Errorf("%w: bad shape %v", ErrFormat, t.Shape)
	}
	if n > math.MaxInt/t.DType.Size() || n*t.DType.Size() != len(t.Data) {
		return fmt.Errorf("%w: shape %v of %s needs %d bytes, have %d", ErrFormat, t.Shape, t.DType, n*t.DType.Size(), len(t.Data))
	}
	return nil
}

// AppendHeader appends the header for t to b.
func AppendHeader(b []byte, dt DType, shape []int) []byte {
	b = append(b, Magic...)
	b = append(b, byte(dt), byte(len(shape)), 0, 0)
	for _, d := range shape {
		b = binary.LittleEndian.AppendUint32(b, uint32(d))
	}
	return b
}

// Marshal encodes t into a new buffer.
func Marshal(t Tensor) ([]byte, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, HeaderSize(len(t.Shape))+len(t.Data))
	b = AppendHeader(b, t.DType, t.Shape)
	return append(b, t.Data...), nil
}

// WriteTo writes t to w without copying its data.
func (t Tensor) WriteTo(w io.Writer) (int64, error) {
	if err := t.Validate(); err != nil {
		return 0, err
	}
	h := AppendHeader(make([]byte, 0, HeaderSize(len(t.Shape))), t.DType, t.Shape)
	n1, err := w.Write(h)
	if err != nil {
		return int64(n1), err
	}
	n2, err := w.Write(t.Data)
	return int64(n1 + n2), err
}

// Unmarshal decodes b. The returned tensor's Data aliases b.
func Unmarshal(b []byte) (Tensor, error) {
	if len(b) < 8 {
		return Tensor{}, fmt.Errorf("%w: %d bytes is shorter than a header", ErrFormat, len(b))
	}
	if string(b[:4]) != Magic {
		return Tensor{}, fmt.Errorf("%w: bad magic %q", ErrFormat, b[:4])
	}
	t := Tensor{DType: DType(b[4])}
	if t.DType.Size() == 0 {
		return Tensor{}, fmt.Errorf("%w: unknown dtype %d", ErrFormat, b[4])
	}
	rank := int(b[5])
	if rank < 1 || rank > MaxRank {
		return Tensor{}, fmt.Errorf("%w: rank %d not in 1..%d", ErrFormat, rank, MaxRank)
	}
	if b[6] != 0 || b[7] != 0 {
		return Tensor{}, fmt.Errorf("%w: reserved bytes set", ErrFormat)
	}
	if len(b) < HeaderSize(rank) {
		return Tensor{}, fmt.Errorf("%w: header truncated", ErrFormat)
	}
	t.Shape = make([]int, rank)
	for i := range rank {
		t.Shape[i] = int(binary.LittleEndian.Uint32(b[8+4*i:]))
	}
	t.Data = b[HeaderSize(rank):]
	if err := t.Validate(); err != nil {
		return Tensor{}, err
	}
	return t, nil
}

// FromFloat32 builds a float32 tensor, copying v.
func FromFloat32(shape []int, v []float32) Tensor {
	d := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(d[4*i:], math.Float32bits(f))
	}
	return Tensor{DType: Float32, Shape: append([]int(nil), shape...), Data: d}
}

// Float32s decodes a float32 tensor's data into dst (grown as needed).
func (t Tensor) Float32s(dst []float32) ([]float32, error) {
	if t.DType != Float32 {
		return nil, fmt.Errorf("tensor is %s, not float32", t.DType)
	}
	n := len(t.Data) / 4
	if cap(dst) < n {
		dst = make([]float32, n)
	}
	dst = dst[:n]
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return dst, nil
}
