package imagedecode

import (
	"encoding/binary"
	"fmt"

	"github.com/lookalike-dev/lookalike/preprocess/internal/turbojpeg"
)

// Decoder names, as in Image.Decoder and the admission calls.
const (
	DecoderTurbo = "turbojpeg"
	DecoderGo    = "go"
)

// Admit reserves bytes, the estimate of what decoder is about to allocate,
// and returns the function that gives them back. It may wait, and fails
// when it cannot reserve them (the caller's deadline, say).
type Admit func(decoder string, bytes int64) (release func(), err error)

func noRelease() {}

// turboCost is what libjpeg-turbo allocates to decode the JPEG j at scale
// f: the output pixels (4 bytes a pixel for CMYK, converted to RGB in
// place), the whole-image coefficient arrays (64 int16 a block) that a
// progressive or multi-scan JPEG needs, and a few rows of samples per
// component.
func turboCost(j *jpegInfo, f turbojpeg.Factor) int64 {
	px := int64(3)
	if len(j.comps) == 4 {
		px = 4
	}
	n := int64(f.Scaled(j.width)) * int64(f.Scaled(j.height)) * px
	if j.progressive || j.scans > 1 {
		n += j.frameBlocks() * 128
	}
	mx, _ := j.mcus()
	n += int64(mx*8*j.hmax) * int64(len(j.comps)) * int64(j.vmax*8) * 4
	return n + 1<<20
}

// goJPEGCost is what image/jpeg allocates: one byte a sample for every
// component's padded blocks, int32 coefficients (256 bytes a block) for
// every component of a progressive JPEG, allocated at the first scan, and
// a 4-byte-a-pixel image when it converts CMYK, YCCK or RGB at the end.
func goJPEGCost(j *jpegInfo) int64 {
	blocks := j.frameBlocks()
	n := blocks * 64
	if j.progressive {
		n += blocks * 256
	}
	rgb := len(j.comps) == 3 && (j.adobe == 0 || (j.comps[0].id == 'R' && j.comps[1].id == 'G' && j.comps[2].id == 'B'))
	if len(j.comps) == 4 || rgb {
		n += 4 * int64(j.width) * int64(j.height)
	}
	return n + 1<<20
}

// goCost is what the Go decoder of cfg's format allocates, from the header:
// the decoded image in the type the decoder returns, and its working
// buffers.
func goCost(cfg Config, data []byte) int64 {
	px := int64(cfg.Width) * int64(cfg.Height)
	switch cfg.Format {
	case JPEG:
		if cfg.jpeg != nil {
			return goJPEGCost(cfg.jpeg)
		}
		return 8*px + 1<<20
	case PNG:
		depth, ct, interlaced := 8, 6, false
		if len(data) >= 29 {
			depth, ct, interlaced = int(data[24]), int(data[25]), data[28] != 0
		}
		bpp := int64(4) // RGB and RGBA 8-bit decode to RGBA/NRGBA, gray+alpha to NRGBA
		switch {
		case ct == 3 || (ct == 0 && depth <= 8):
			bpp = 1
		case ct == 0:
			bpp = 2
		case depth == 16:
			bpp = 8
		}
		n := px * bpp
		if interlaced { // each pass is decoded into its own image, then merged
			n *= 2
		}
		return n + 2*int64(cfg.Width)*8 + 1<<20
	case GIF:
		// The paletted first frame, and its copy when interlaced.
		return 2*cfg.gifFrame + 1<<20
	case WebP:
		if len(data) >= 16 && string(data[12:16]) == "VP8 " {
			return px*5/2 + 1<<20 // 4:2:0 planes
		}
		return 8*px + 1<<20 // lossless (NRGBA and its transforms), or extended with alpha
	}
	return 8*px + 1<<20
}

// deflateMaxRatio bounds how far deflate expands: one 258-byte match costs
// at least two bits.
const deflateMaxRatio = 1032

// walkPNG checks a PNG's chunks against its header before the decoder
// allocates the image: the file must reach IEND (image/png refuses it
// otherwise), and its IDAT data must be long enough to inflate to the rows
// the header declares.
func walkPNG(b []byte, cfg Config) error {
	if len(b) < 29 {
		return fmt.Errorf("%w: png: truncated header", ErrCorrupt)
	}
	depth, ct := int64(b[24]), b[25]
	channels := map[byte]int64{0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ct]
	raw := int64(cfg.Height) * (1 + (int64(cfg.Width)*channels*depth+7)/8)
	var idat int64
	for i := 8; ; {
		if i+8 > len(b) {
			return fmt.Errorf("%w: png: truncated (no IEND chunk)", ErrCorrupt)
		}
		n := int64(binary.BigEndian.Uint32(b[i:]))
		if n > int64(len(b)-i-12) {
			return fmt.Errorf("%w: png: truncated %q chunk", ErrCorrupt, b[i+4:i+8])
		}
		switch string(b[i+4 : i+8]) {
		case "IDAT":
			idat += n
		case "IEND":
			if idat*deflateMaxRatio+1024 < raw {
				return fmt.Errorf("%w: png: %d bytes of image data cannot hold the %d bytes of rows the header declares", ErrCorrupt, idat, raw)
			}
			return nil
		}
		i += 12 + int(n)
	}
}

// walkGIF reads a GIF's blocks up to the end of its first frame and
// returns the frame's pixel count. The frame's LZW data must be long
// enough for its pixels (a code is at least min code size + 1 bits and
// emits at most 4096 pixels); image/gif allocates the frame before it
// finds out, and refuses it after.
func walkGIF(b []byte) (int64, error) {
	truncated := fmt.Errorf("%w: gif: truncated before the end of the first frame", ErrCorrupt)
	if len(b) < 13 {
		return 0, truncated
	}
	i := 13
	if f := b[10]; f&0x80 != 0 {
		i += 3 << (f&7 + 1)
	}
	// subBlocks skips a chain of sub-blocks from b[i] and returns the data
	// bytes and where the chain ends.
	subBlocks := func(i int) (int64, int, bool) {
		var n int64
		for i < len(b) {
			sz := int(b[i])
			i++
			if sz == 0 {
				return n, i, true
			}
			i += sz
			n += int64(sz)
		}
		return 0, 0, false
	}
	for i < len(b) {
		switch b[i] {
		case 0x21: // extension: label, then sub-blocks
			if i+2 > len(b) {
				return 0, truncated
			}
			_, end, ok := subBlocks(i + 2)
			if !ok {
				return 0, truncated
			}
			i = end
		case 0x2C: // image descriptor
			if i+11 > len(b) {
				return 0, truncated
			}
			w, h := int64(binary.LittleEndian.Uint16(b[i+5:])), int64(binary.LittleEndian.Uint16(b[i+7:]))
			f := b[i+9]
			i += 10
			if f&0x80 != 0 {
				i += 3 << (f&7 + 1)
			}
			if i >= len(b) {
				return 0, truncated
			}
			codeBits := int64(max(b[i], 1)) + 1
			n, _, ok := subBlocks(i + 1)
			if !ok {
				return 0, truncated
			}
			if px := w * h; (n*8/codeBits+1)*4096 < px {
				return 0, fmt.Errorf("%w: gif: %d bytes of image data cannot hold a %dx%d frame", ErrCorrupt, n, w, h)
			}
			return w * h, nil
		case 0x3B:
			return 0, fmt.Errorf("%w: gif: no image", ErrCorrupt)
		default:
			return 0, fmt.Errorf("%w: gif: unknown block %#x", ErrCorrupt, b[i])
		}
	}
	return 0, truncated
}
