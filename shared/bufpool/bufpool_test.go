package bufpool

import (
	"bytes"
	"errors"
	"testing"
	"testing/iotest"
)

func TestGetPut(t *testing.T) {
	tests := []struct {
		n, wantCap int
	}{
		{1, 1},
		{3, 4},
		{602112, 1 << 20},
		{32 * 602112, 1 << 25},
	}
	var p Pool
	for _, tt := range tests {
		b := p.Get(tt.n)
		if len(b) != tt.n || cap(b) != tt.wantCap {
			t.Errorf("Get(%d): len %d cap %d, want len %d cap %d", tt.n, len(b), cap(b), tt.n, tt.wantCap)
		}
		p.Put(b)
		// A smaller request of the same class may get the same buffer back,
		// always with the length it asked for.
		c := p.Get(tt.wantCap/2 + 1)
		if tt.wantCap > 1 && (len(c) != tt.wantCap/2+1 || cap(c) != tt.wantCap) {
			t.Errorf("after Put, Get(%d): len %d cap %d", tt.wantCap/2+1, len(c), cap(c))
		}
	}
	// Buffers the pool did not make are ignored, not recycled with a wrong class.
	p.Put(make([]byte, 3)) // cap 3: not a power of two
	if b := p.Get(3); cap(b) != 4 {
		t.Errorf("a foreign buffer of cap 3 came back for Get(3): cap %d", cap(b))
	}
}

func TestNilPoolAllocates(t *testing.T) {
	var p *Pool
	b := p.Get(1000)
	if len(b) != 1000 || cap(b) != 1000 {
		t.Fatalf("nil pool Get(1000): len %d cap %d, want an exact allocation", len(b), cap(b))
	}
	p.Put(b) // no-op, no panic
	body := bytes.Repeat([]byte("x"), 10_000)
	got, err := p.ReadAll(bytes.NewReader(body), len(body)+1, len(body))
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("nil pool ReadAll: %d bytes, %v", len(got), err)
	}
	if _, err := p.ReadAll(bytes.NewReader(body), 0, len(body)-1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("nil pool ReadAll over the limit: %v, want ErrTooLarge", err)
	}
}

func TestReadAll(t *testing.T) {
	body := bytes.Repeat([]byte("tensor"), 100_000) // 600,000 bytes
	tests := []struct {
		name    string
		hint    int
		limit   int
		wantErr error
		wantCap int // 0: any power of two
	}{
		{"declared length", len(body) + 1, 1 << 30, nil, 1 << 20},
		{"no hint: grows by class", 0, 1 << 30, nil, 1 << 20},
		{"hint too short", 10, 1 << 30, nil, 1 << 20},
		{"exactly the limit", 0, len(body), nil, 0},
		{"one byte over the limit", 0, len(body) - 1, ErrTooLarge, 0},
		{"far over the limit, declared", len(body) + 1, 1000, ErrTooLarge, 0},
	}
	var p Pool
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Half reads: the loop must keep reading to EOF.
			got, err := p.ReadAll(iotest.HalfReader(bytes.NewReader(body)), tt.hint, tt.limit)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				return
			}
			if !bytes.Equal(got, body) {
				t.Fatalf("read %d bytes, want %d", len(got), len(body))
			}
			if c := cap(got); c&(c-1) != 0 || (tt.wantCap != 0 && c != tt.wantCap) {
				t.Errorf("cap %d, want a pooled class %d", c, tt.wantCap)
			}
			p.Put(got)
		})
	}
	if _, err := p.ReadAll(iotest.ErrReader(iotest.ErrTimeout), 5, 100); err != iotest.ErrTimeout {
		t.Errorf("read error %v, want it passed on", err)
	}
}

func TestLease(t *testing.T) {
	var p Pool
	l := p.Lease(p.Get(1000))
	l.Bytes()[0] = 42
	l.Retain() // a transport reading the body
	l.Release()
	if !l.Held() || l.Bytes() == nil {
		t.Fatal("buffer recycled while a reader still holds it")
	}
	l.Release()
	if l.Held() || l.Bytes() != nil {
		t.Fatal("buffer not recycled after the last release")
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("a release past zero did not panic")
			}
		}()
		l.Release()
	}()
}

func BenchmarkTensorBuffer(b *testing.B) {
	const n = 602112
	b.Run("make", func(b *testing.B) {
		b.SetBytes(n)
		for b.Loop() {
			buf := make([]byte, n)
			buf[n-1] = 1
		}
	})
	b.Run("pool", func(b *testing.B) {
		var p Pool
		b.SetBytes(n)
		for b.Loop() {
			buf := p.Get(n)
			buf[n-1] = 1
			p.Put(buf)
		}
	})
}
