package readall

import (
	"bytes"
	"testing"
	"testing/iotest"
)

func TestReadAll(t *testing.T) {
	body := bytes.Repeat([]byte("tensor"), 100_000)
	tests := []struct {
		name    string
		hint    int
		wantCap int // 0: any
	}{
		{"hint exact plus one", len(body) + 1, len(body) + 1},
		{"no hint", 0, 0},
		{"hint too short", 10, 0},
		{"hint too long", 2 * len(body), 2 * len(body)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Half reads: the loop must keep reading to EOF.
			got, err := ReadAll(iotest.HalfReader(bytes.NewReader(body)), tt.hint)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, body) {
				t.Fatalf("read %d bytes, want %d", len(got), len(body))
			}
			if tt.wantCap != 0 && cap(got) != tt.wantCap {
				t.Errorf("cap %d, want %d (one buffer, no growth)", cap(got), tt.wantCap)
			}
			if tt.wantCap == 0 && cap(got) > 4*len(body) {
				t.Errorf("cap %d for %d bytes: growth is not doubling", cap(got), len(body))
			}
		})
	}
	if _, err := ReadAll(iotest.ErrReader(iotest.ErrTimeout), 5); err != iotest.ErrTimeout {
		t.Errorf("read error %v, want it passed on", err)
	}
}

func TestHint(t *testing.T) {
	tests := []struct {
		declared, limit, reserve int64
		want                     int
	}{
		{-1, 20 << 20, 4 << 20, 0},             // undeclared
		{0, 20 << 20, 4 << 20, 0},              // empty
		{1000, 20 << 20, 4 << 20, 1001},        // all of it, and a byte to see EOF
		{30 << 20, 20 << 20, 4 << 20, 0},       // over the limit: refused while reading
		{20 << 20, 20 << 20, 4 << 20, 4 << 20}, // declared but not yet sent: bounded
		{20 << 20, 256 << 20, 0, 20<<20 + 1},   // no reserve cap
	}
	for _, tt := range tests {
		if got := Hint(tt.declared, tt.limit, tt.reserve); got != tt.want {
			t.Errorf("Hint(%d, %d, %d) = %d, want %d", tt.declared, tt.limit, tt.reserve, got, tt.want)
		}
	}
}
