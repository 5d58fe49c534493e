package api

import "testing"

func TestBodyPool(t *testing.T) {
	tests := []struct {
		n, wantCap int
	}{
		{1, 1},
		{3, 4},
		{602112, 1 << 20},
		{32 * 602112, 1 << 25},
	}
	var p bodyPool
	for _, tt := range tests {
		b := p.get(tt.n)
		if len(b) != tt.n || cap(b) != tt.wantCap {
			t.Errorf("get(%d): len %d cap %d, want len %d cap %d", tt.n, len(b), cap(b), tt.n, tt.wantCap)
		}
		b[0] = 7
		p.put(b)
		// A smaller request of the same class may get the same buffer back,
		// always with the length it asked for.
		c := p.get(tt.wantCap/2 + 1)
		if tt.wantCap > 1 && (len(c) != tt.wantCap/2+1 || cap(c) != tt.wantCap) {
			t.Errorf("after put, get(%d): len %d cap %d", tt.wantCap/2+1, len(c), cap(c))
		}
	}
	// Buffers the pool did not make are ignored, not recycled with a wrong class.
	p.put(make([]byte, 3)) // cap 3: not a power of two
	if b := p.get(3); cap(b) != 4 {
		t.Errorf("a foreign buffer of cap 3 came back for get(3): cap %d", cap(b))
	}
}
