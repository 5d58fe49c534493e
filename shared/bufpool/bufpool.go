// Package bufpool recycles large byte buffers (request bodies, tensors) by
// power-of-two size class. A 224x224 float32 tensor is 600 KB and a photo
// upload about as much: allocating them per request costs zeroing, page
// faults and garbage collection that slow the work sharing the cores.
//
// A buffer handed to an HTTP client as a request body may still be read by
// the transport after the call returns (net/http closes a request body in
// its own time, and a retrying client replays it): Lease counts those
// readers and recycles the buffer only after the last one let go.
package bufpool

import (
	"errors"
	"io"
	"math/bits"
	"sync"
	"sync/atomic"
)

// maxClass bounds the sizes pooled: 1<<maxClass bytes (1 GiB); larger
// buffers are allocated and left to the garbage collector.
const maxClass = 30

// Pool recycles buffers by size class. The zero value is ready to use. A
// nil *Pool allocates exactly what is asked and recycles nothing, so a
// caller that pools only sometimes has one code path.
type Pool struct {
	classes [maxClass + 1]sync.Pool
}

// Get returns a buffer of length n (its capacity is n rounded up to a power
// of two). Its bytes are not zeroed: they are whatever its last user left.
func (p *Pool) Get(n int) []byte {
	c := sizeClass(n)
	if p == nil || c > maxClass {
		return make([]byte, n)
	}
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, 1<<c)
}

// Put recycles b. Only a buffer nothing refers to any more may be put;
// buffers the pool did not make (capacity not a power of two) are ignored.
func (p *Pool) Put(b []byte) {
	c := sizeClass(cap(b))
	if p == nil || c > maxClass || cap(b) != 1<<c || cap(b) == 0 {
		return
	}
	b = b[:0]
	p.classes[c].Put(&b)
}

// sizeClass is the smallest c with 1<<c >= n.
func sizeClass(n int) int {
	if n <= 1 {
		return 0
	}
	return bits.Len(uint(n - 1))
}

// ErrTooLarge is returned by ReadAll for a body over its limit.
var ErrTooLarge = errors.New("bufpool: body over the limit")

// ReadAll reads r to EOF into a pooled buffer, sized first from hint (a
// declared length plus one, 0 when unknown) and grown by class, reading at
// most limit bytes (more is ErrTooLarge). The caller owns the result and
// may Put it back when done.
func (p *Pool) ReadAll(r io.Reader, hint, limit int) ([]byte, error) {
	b := p.Get(min(max(hint, 4096), limit+1))[:0]
	for {
		if len(b) == cap(b) {
			nb := p.Get(2 * cap(b))[:len(b)]
			copy(nb, b)
			p.Put(b)
			b = nb
		}
		room := b[len(b):cap(b)]
		if over := len(b) + len(room) - (limit + 1); over > 0 {
			room = room[:len(room)-over]
		}
		n, err := r.Read(room)
		b = b[:len(b)+n]
		if len(b) > limit {
			p.Put(b)
			return nil, ErrTooLarge
		}
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			p.Put(b)
			return nil, err
		}
	}
}

// Holder is shared ownership of a buffer: each user Retains it before use
// and Releases it after; the last Release recycles it.
type Holder interface {
	Retain()
	Release()
}

// Lease is a pooled buffer with a reference count. It starts with one
// reference, the caller's.
type Lease struct {
	pool *Pool
	buf  []byte
	refs atomic.Int32
}

// Lease wraps b, a buffer from p (Get or ReadAll), with one reference.
func (p *Pool) Lease(b []byte) *Lease {
	l := &Lease{pool: p, buf: b}
	l.refs.Store(1)
	return l
}

// Bytes is the leased buffer, for a holder of a reference.
func (l *Lease) Bytes() []byte { return l.buf }

// Held reports whether a reference remains (false: the buffer went back).
func (l *Lease) Held() bool { return l.refs.Load() > 0 }

// Retain adds a reference.
func (l *Lease) Retain() {
	if l.refs.Add(1) <= 1 {
		panic("bufpool: Retain of a released lease")
	}
}

// Release drops a reference; the last one puts the buffer back.
func (l *Lease) Release() {
	switch n := l.refs.Add(-1); {
	case n == 0:
		b := l.buf
		l.buf = nil
		l.pool.Put(b)
	case n < 0:
		panic("bufpool: Release of a released lease")
	}
}
