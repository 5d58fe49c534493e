// Package readall reads a body whole into one buffer sized from a hint (a
// declared Content-Length), growing by doubling when the hint falls short.
// io.ReadAll starts at 512 bytes and grows large slices by only 1.25x: a
// 600 KB tensor or a multi-megabyte photo then costs dozens of copies.
package readall

import "io"

// ReadAll reads r to EOF into a buffer of initial capacity hint (at least
// 512 bytes). A caller sizing from a declared length passes length+1, so
// that reading the EOF needs no growth. Bound r (io.LimitReader,
// http.MaxBytesReader) and the hint against untrusted sizes.
func ReadAll(r io.Reader, hint int) ([]byte, error) {
	b := make([]byte, 0, max(hint, 512))
	for {
		if len(b) == cap(b) {
			nb := make([]byte, len(b), 2*cap(b))
			copy(nb, b)
			b = nb
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// Hint is the capacity to start reading a body of declared length with
// (a Content-Length; 0 or -1 when unknown): all of it and a byte to see EOF
// when it is declared and at most limit, but no more than reserve before the
// bytes arrive (0: no cap), so a client that declares a large body and sends
// nothing costs little. Otherwise 0: ReadAll's default.
func Hint(declared, limit, reserve int64) int {
	if declared <= 0 || declared > limit {
		return 0
	}
	if reserve > 0 {
		return int(min(declared+1, reserve))
	}
	return int(declared + 1)
}
