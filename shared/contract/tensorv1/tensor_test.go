package tensorv1

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		t    Tensor
	}{
		{"float32 nchw", FromFloat32([]int{1, 3, 2, 2}, []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})},
		{"uint8 vector", Tensor{DType: Uint8, Shape: []int{5}, Data: []byte{1, 2, 3, 4, 5}}},
		{"float16 rank 8", Tensor{DType: Float16, Shape: []int{1, 1, 1, 1, 1, 1, 1, 2}, Data: []byte{0, 60, 0, 64}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Marshal(tc.t)
			if err != nil {
				t.Fatal(err)
			}
			var w bytes.Buffer
			if _, err := tc.t.WriteTo(&w); err != nil || !bytes.Equal(w.Bytes(), b) {
				t.Fatalf("WriteTo differs from Marshal: %v", err)
			}
			got, err := Unmarshal(b)
			if err != nil {
				t.Fatal(err)
			}
			if got.DType != tc.t.DType || len(got.Shape) != len(tc.t.Shape) || !bytes.Equal(got.Data, tc.t.Data) {
				t.Fatalf("got %+v, want %+v", got, tc.t)
			}
		})
	}
	f, _ := FromFloat32([]int{2}, []float32{1.5, -2}).Float32s(nil)
	if f[0] != 1.5 || f[1] != -2 {
		t.Fatalf("Float32s = %v", f)
	}
}

func header(dt, rank byte, dims ...uint32) []byte {
	b := []byte(Magic)
	b = append(b, dt, rank, 0, 0)
	for _, d := range dims {
		b = binary.LittleEndian.AppendUint32(b, d)
	}
	return b
}

func TestUnmarshalRejects(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short", []byte("LKT")},
		{"bad magic", append([]byte("XXXX"), 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0)},
		{"unknown dtype", append(header(9, 1, 1), 0, 0, 0, 0)},
		{"rank 0", header(1, 0)},
		{"rank 9", header(1, 9, 1, 1, 1, 1, 1, 1, 1, 1, 1)},
		{"reserved set", []byte{'L', 'K', 'T', '1', 1, 1, 1, 0, 1, 0, 0, 0}},
		{"dims truncated", header(1, 2, 1)},
		{"zero dim", header(1, 1, 0)},
		{"data short", append(header(1, 1, 2), 0, 0, 0, 0)},
		{"data long", append(header(3, 1, 1), 1, 2)},
		{"huge declared shape", append(header(1, 4, 65535, 65535, 65535, 65535), 0, 0, 0, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Unmarshal(tc.b); !errors.Is(err, ErrFormat) {
				t.Fatalf("err = %v, want ErrFormat", err)
			}
		})
	}
}

// FuzzUnmarshal: decoding never panics, never allocates past its input, and
// what decodes re-encodes to the same bytes.
func FuzzUnmarshal(f *testing.F) {
	good, _ := Marshal(FromFloat32([]int{1, 3, 2, 2}, make([]float32, 12)))
	f.Add(good)
	f.Add(header(1, 4, 65535, 65535, 65535, 65535))
	f.Add([]byte("LKT1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		tt, err := Unmarshal(b)
		if err != nil {
			return
		}
		again, err := Marshal(tt)
		if err != nil {
			t.Fatalf("decoded tensor does not re-encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs")
		}
	})
}
