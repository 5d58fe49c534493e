package api

import (
	"math/bits"
	"sync"
)

// bodyPool recycles request body buffers by power-of-two size class. A
// batch of 32 float32 224x224 images is 19 MB: allocating it per request
// costs page faults, zeroing and garbage collection that slow the
// inferences sharing the cores (measured: about 10% of throughput).
type bodyPool struct {
	classes [40]sync.Pool
}

// get returns a buffer of length n.
func (p *bodyPool) get(n int) []byte {
	c := sizeClass(n)
	if c >= len(p.classes) {
		return make([]byte, n)
	}
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, 1<<c)
}

// put recycles b. Only a buffer nothing else refers to any more may be put.
func (p *bodyPool) put(b []byte) {
	c := sizeClass(cap(b))
	if c >= len(p.classes) || cap(b) != 1<<c {
		return // not one of ours
	}
	p.classes[c].Put(&b)
}

// sizeClass is the smallest c with 1<<c >= n.
func sizeClass(n int) int {
	if n <= 1 {
		return 0
	}
	return bits.Len(uint(n - 1))
}
