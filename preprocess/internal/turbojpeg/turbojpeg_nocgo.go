//go:build !cgo || noturbojpeg

package turbojpeg

import "context"

// Available reports whether libjpeg-turbo is linked in.
func Available() bool { return false }

// KeepFreedMemory does nothing: without libjpeg-turbo there is no C
// allocator to tune.
func KeepFreedMemory(int) error { return nil }

// DecodeHeader returns ErrUnavailable.
func DecodeHeader([]byte) (Header, error) { return Header{}, ErrUnavailable }

// Factors returns nil.
func Factors() []Factor { return nil }

// DecodeRGB returns ErrUnavailable.
func DecodeRGB(_ context.Context, _ []byte, _ Factor, _ bool, dst []byte) ([]byte, int, int, error) {
	return dst, 0, 0, ErrUnavailable
}
