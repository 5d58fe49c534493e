//go:build cgo && !noturbojpeg

package turbojpeg

/*
#cgo LDFLAGS: -lturbojpeg
#include <stdlib.h>
#include <malloc.h>
#include <turbojpeg.h>
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Available reports whether libjpeg-turbo is linked in.
func Available() bool { return true }

// KeepFreedMemory tunes the C allocator (glibc malloc) that libjpeg uses
// for the process: blocks up to 32 MiB come from the heap rather than
// fresh mmaps, and freed memory is kept rather than handed back to the
// kernel while less than trim bytes lie free. A progressive JPEG is
// decoded through full-size coefficient arrays (40 MB for 13 MP) that
// glibc otherwise maps and unmaps (or trims) around every image: each
// decode then zero-fills ~10,000 fresh pages, measured here as 3.5x the
// CPU of the decode itself on repeated 13 MP photos. The price is that
// the process keeps its peak decode memory (about 100 MB per concurrent
// 16 MP progressive decode).
//
// The trim threshold holds for glibc's main arena only: the other arenas
// (one per thread, up to 8 per core) unmap a 64 MB heap whenever it
// empties. Run the process with MALLOC_ARENA_MAX=1 (OneArena), which glibc
// reads at start; a mallopt later cannot move threads already bound to an
// arena, nor stop new ones taking over those of threads that ended.
func KeepFreedMemory(trim int) error {
	if C.mallopt(C.M_MMAP_THRESHOLD, C.int(32<<20)) != 1 {
		return fmt.Errorf("turbojpeg: mallopt(M_MMAP_THRESHOLD) refused")
	}
	if C.mallopt(C.M_TRIM_THRESHOLD, C.int(trim)) != 1 {
		return fmt.Errorf("turbojpeg: mallopt(M_TRIM_THRESHOLD) refused")
	}
	return nil
}

func errorOf(h C.tjhandle, what string) error {
	msg := C.GoString(C.tjGetErrorStr2(h))
	if C.tjGetErrorCode(h) == C.TJERR_WARNING {
		return fmt.Errorf("%w: %s: %s", ErrWarning, what, msg)
	}
	return fmt.Errorf("turbojpeg: %s: %s", what, msg)
}

// DecodeHeader reads the JPEG header.
func DecodeHeader(jpeg []byte) (Header, error) {
	if len(jpeg) == 0 {
		return Header{}, fmt.Errorf("turbojpeg: empty input")
	}
	h := C.tjInitDecompress()
	if h == nil {
		return Header{}, fmt.Errorf("turbojpeg: init: %s", C.GoString(C.tjGetErrorStr2(nil)))
	}
	defer C.tjDestroy(h)
	var w, ht, ss, cs C.int
	if C.tjDecompressHeader3(h, (*C.uchar)(unsafe.Pointer(&jpeg[0])), C.ulong(len(jpeg)), &w, &ht, &ss, &cs) != 0 {
		return Header{}, errorOf(h, "reading header")
	}
	return Header{Width: int(w), Height: int(ht), Colorspace: Colorspace(cs)}, nil
}

// Factors lists the scaling factors the library supports, largest first.
func Factors() []Factor {
	var n C.int
	p := C.tjGetScalingFactors(&n)
	if p == nil || n <= 0 {
		return nil
	}
	sf := unsafe.Slice(p, int(n))
	out := make([]Factor, 0, len(sf))
	for _, f := range sf {
		out = append(out, Factor{Num: int(f.num), Denom: int(f.denom)})
	}
	return out
}

// DecodeRGB decodes jpeg at scale f into packed RGB (3 bytes a pixel),
// reusing dst when it is large enough. It returns the pixels and the decoded
// size. fast selects the faster, slightly less exact DCT and upsampling.
// CMYK and YCCK images are refused (libjpeg-turbo cannot convert them to RGB).
func DecodeRGB(jpeg []byte, f Factor, fast bool, dst []byte) (pix []byte, w, h int, err error) {
	if len(jpeg) == 0 {
		return dst, 0, 0, fmt.Errorf("turbojpeg: empty input")
	}
	hd := C.tjInitDecompress()
	if hd == nil {
		return dst, 0, 0, fmt.Errorf("turbojpeg: init: %s", C.GoString(C.tjGetErrorStr2(nil)))
	}
	defer C.tjDestroy(hd)
	src := (*C.uchar)(unsafe.Pointer(&jpeg[0]))
	var cw, ch, ss, cs C.int
	if C.tjDecompressHeader3(hd, src, C.ulong(len(jpeg)), &cw, &ch, &ss, &cs) != 0 {
		return dst, 0, 0, errorOf(hd, "reading header")
	}
	if cs == C.TJCS_CMYK || cs == C.TJCS_YCCK {
		return dst, 0, 0, fmt.Errorf("turbojpeg: colour space %d has no RGB conversion", int(cs))
	}
	w, h = f.Scaled(int(cw)), f.Scaled(int(ch))
	n := w * h * 3
	if n <= 0 {
		return dst, 0, 0, fmt.Errorf("turbojpeg: bad scaled size %dx%d", w, h)
	}
	if cap(dst) < n {
		dst = make([]byte, n)
	}
	dst = dst[:n]
	flags := C.int(0)
	if fast {
		flags |= C.TJFLAG_FASTDCT | C.TJFLAG_FASTUPSAMPLE
	}
	if C.tjDecompress2(hd, src, C.ulong(len(jpeg)), (*C.uchar)(unsafe.Pointer(&dst[0])), C.int(w), 0, C.int(h), C.TJPF_RGB, flags) != 0 {
		return dst, 0, 0, errorOf(hd, "decoding")
	}
	return dst, w, h, nil
}
