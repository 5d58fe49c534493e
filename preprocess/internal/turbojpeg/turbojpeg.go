// Package turbojpeg wraps the parts of libjpeg-turbo that preprocess needs:
// reading a JPEG header (TurboJPEG API) and decoding at a reduced scale in
// the DCT domain (1/2, 1/4, 1/8 ...), which is what makes large JPEGs cheap.
// Decodes go through the libjpeg API, as tjDecompress2 does, with a progress
// monitor, so that a caller who gives up stops the decode between two rows.
//
// It is the only package in the module that uses cgo. Built with
// CGO_ENABLED=0 or the tag noturbojpeg, Available reports false and every
// call returns ErrUnavailable; callers then use image/jpeg.
package turbojpeg

import (
	"errors"
	"strings"
)

// ArenaEnv is the environment a decoding process should start with: glibc
// malloc with one arena. With an arena per thread, a server's decodes (on
// whichever thread is free) faulted in ~20,000 fresh pages a second under
// load, 5x as many as with one, and spent ~12% of their CPU in the kernel
// (measured under make bench-e2e); libjpeg allocates a handful of blocks
// per image, so the one arena's lock is not contended.
const ArenaEnv = "MALLOC_ARENA_MAX=1"

// OneArena reports whether the environment (getenv) gives glibc malloc one
// arena, by MALLOC_ARENA_MAX or GLIBC_TUNABLES.
func OneArena(getenv func(string) string) bool {
	if getenv("MALLOC_ARENA_MAX") == "1" {
		return true
	}
	for _, t := range strings.Split(getenv("GLIBC_TUNABLES"), ":") {
		if t == "glibc.malloc.arena_max=1" {
			return true
		}
	}
	return false
}

// ErrUnavailable is returned by every call when the package was built
// without libjpeg-turbo.
var ErrUnavailable = errors.New("turbojpeg: built without libjpeg-turbo (cgo disabled or tag noturbojpeg)")

// ErrWarning wraps decoding problems libjpeg-turbo reports as warnings
// (e.g. premature end of data): the pixels may be incomplete.
var ErrWarning = errors.New("turbojpeg: warning")

// Colorspace is the JPEG colour space from the header.
type Colorspace int

// JPEG colour spaces (TJCS_*).
const (
	RGB Colorspace = iota
	YCbCr
	Gray
	CMYK
	YCCK
)

// Header is what tjDecompressHeader3 reports.
type Header struct {
	Width, Height int
	Colorspace    Colorspace
}

// Factor is a scaling factor num/denom.
type Factor struct{ Num, Denom int }

// Scaled is the decoded size of dim at f, as libjpeg-turbo computes it.
func (f Factor) Scaled(dim int) int { return (dim*f.Num + f.Denom - 1) / f.Denom }

// Float is num/denom.
func (f Factor) Float() float64 { return float64(f.Num) / float64(f.Denom) }

// cmykToRGB converts packed CMYK as libjpeg decodes an Adobe CMYK or YCCK
// JPEG (inverted: 255 is no ink) to packed RGB, in place: the result is
// the first three quarters of p.
func cmykToRGB(p []byte) []byte {
	n := len(p) / 4
	for i := range n {
		c, m, y, k := uint32(p[4*i]), uint32(p[4*i+1]), uint32(p[4*i+2]), uint32(p[4*i+3])
		p[3*i] = uint8((c*k + 127) / 255)
		p[3*i+1] = uint8((m*k + 127) / 255)
		p[3*i+2] = uint8((y*k + 127) / 255)
	}
	return p[:3*n]
}
