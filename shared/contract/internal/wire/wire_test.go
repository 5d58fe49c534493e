package wire

import (
	"bytes"
	"testing"
	"testing/iotest"
)

func TestReadAll(t *testing.T) {
	body := bytes.Repeat([]byte("tensor"), 100_000)
	tests := []struct {
		name     string
		declared int64
	}{
		{"declared exactly", int64(len(body))},
		{"unknown length", -1},
		{"declared too short", 10},
		{"declared too long", int64(len(body)) * 2},
		{"declared over the response bound", MaxResponse + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// One byte per Read: the loop must keep reading to EOF.
			got, err := readAll(iotest.HalfReader(bytes.NewReader(body)), tt.declared)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, body) {
				t.Fatalf("read %d bytes, want %d", len(got), len(body))
			}
			if tt.declared == int64(len(body)) && cap(got) != len(body)+1 {
				t.Errorf("declared length read into cap %d, want one buffer of %d", cap(got), len(body)+1)
			}
		})
	}
	if _, err := readAll(iotest.ErrReader(iotest.ErrTimeout), 5); err != iotest.ErrTimeout {
		t.Errorf("read error %v, want it passed on", err)
	}
}
