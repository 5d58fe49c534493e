package imagedecode

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// jpegComp is one frame component: its sampling factors.
type jpegComp struct {
	id   byte
	h, v int
}

// jpegInfo is what a walk over a JPEG's markers learns before any decoder
// runs: the frame, the colour transform and the scans.
type jpegInfo struct {
	progressive, arithmetic bool
	width, height           int
	comps                   []jpegComp
	hmax, vmax              int
	// adobe is the APP14 Adobe colour transform, -1 without the marker.
	adobe int
	// scans is the number of SOS markers; visits the blocks they cover,
	// summed over the scans (a decoder's work grows with it).
	scans  int
	visits int64
}

// mcus is the frame's size in MCUs (interleaved order).
func (j *jpegInfo) mcus() (mx, my int) {
	return ceilDiv(j.width, 8*j.hmax), ceilDiv(j.height, 8*j.vmax)
}

// blocks is the number of 8x8 blocks of component c as the decoders store
// them (padded to whole MCUs).
func (j *jpegInfo) blocks(c jpegComp) int64 {
	mx, my := j.mcus()
	return int64(mx*c.h) * int64(my*c.v)
}

// frameBlocks sums blocks over the components.
func (j *jpegInfo) frameBlocks() int64 {
	var n int64
	for _, c := range j.comps {
		n += j.blocks(c)
	}
	return n
}

// scanBlocks is the number of blocks one scan of the components sel codes:
// whole MCUs when interleaved, the component's own blocks when not.
func (j *jpegInfo) scanBlocks(sel []jpegComp) int64 {
	if len(sel) == 1 {
		c := sel[0]
		return int64(ceilDiv(ceilDiv(j.width*c.h, j.hmax), 8)) * int64(ceilDiv(ceilDiv(j.height*c.v, j.vmax), 8))
	}
	mx, my := j.mcus()
	per := 0
	for _, c := range sel {
		per += c.h * c.v
	}
	return int64(mx) * int64(my) * int64(per)
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// ScanLimits bound the scans of a progressive JPEG, checked before either
// decoder runs.
type ScanLimits struct {
	// MaxScans is the most SOS markers (0: no limit).
	MaxScans int
	// MaxVisitsPerBlock is the most times the scans may cover each block of
	// the frame, on average (0: no limit).
	MaxVisitsPerBlock int
}

// walkJPEG reads the markers of the first image in b. It refuses, without
// allocating in proportion to the declared size: a missing frame, scan or
// end-of-image marker (truncated: both decoders refuse such a file, after
// allocating the whole image), a scan whose entropy-coded data is shorter
// than one bit per block it must code (a huge frame declared by a few bytes),
// and more scans than lim allows.
func walkJPEG(b []byte, lim ScanLimits) (*jpegInfo, error) {
	j := &jpegInfo{adobe: -1}
	i := 2
	for {
		if i+2 > len(b) {
			return nil, fmt.Errorf("%w: jpeg: truncated (no end-of-image marker)", ErrCorrupt)
		}
		if b[i] != 0xFF {
			// Junk between segments: image/jpeg and libjpeg skip it too.
			k := bytes.IndexByte(b[i:], 0xFF)
			if k < 0 {
				return nil, fmt.Errorf("%w: jpeg: truncated (no end-of-image marker)", ErrCorrupt)
			}
			i += k
			continue
		}
		m := b[i+1]
		switch {
		case m == 0xFF: // fill byte
			i++
			continue
		case m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7):
			i += 2
			continue
		case m == 0xD9:
			if j.comps == nil || j.scans == 0 {
				return nil, fmt.Errorf("%w: jpeg: no frame or no scan before the end of the image", ErrCorrupt)
			}
			return j, nil
		}
		if i+4 > len(b) {
			return nil, fmt.Errorf("%w: jpeg: truncated in a marker", ErrCorrupt)
		}
		n := int(binary.BigEndian.Uint16(b[i+2:]))
		if n < 2 || i+2+n > len(b) {
			return nil, fmt.Errorf("%w: jpeg: truncated segment (marker %#x, %d bytes)", ErrCorrupt, m, n)
		}
		seg := b[i+4 : i+2+n]
		i += 2 + n
		switch {
		case m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC:
			if err := j.frame(m, seg); err != nil {
				return nil, err
			}
		case m == 0xEE && len(seg) >= 12 && string(seg[:5]) == "Adobe":
			j.adobe = int(seg[11])
		case m == 0xDA:
			end, err := j.scan(seg, b, i, lim)
			if err != nil {
				return nil, err
			}
			i = end
		}
	}
}

func (j *jpegInfo) frame(m byte, seg []byte) error {
	if j.comps != nil {
		return fmt.Errorf("%w: jpeg: a second frame header", ErrCorrupt)
	}
	if len(seg) < 6 {
		return fmt.Errorf("%w: jpeg: short frame header", ErrCorrupt)
	}
	nc := int(seg[5])
	if nc < 1 || nc > 4 || len(seg) < 6+3*nc {
		return fmt.Errorf("%w: jpeg: frame header with %d components", ErrCorrupt, nc)
	}
	j.progressive = m == 0xC2 || m == 0xC6 || m == 0xCA || m == 0xCE
	j.arithmetic = m >= 0xC9
	j.height = int(binary.BigEndian.Uint16(seg[1:]))
	j.width = int(binary.BigEndian.Uint16(seg[3:]))
	if j.width < 1 || j.height < 1 {
		return fmt.Errorf("%w: jpeg: frame declares %dx%d", ErrCorrupt, j.width, j.height)
	}
	j.comps = make([]jpegComp, nc)
	for k := range nc {
		c := seg[6+3*k:]
		h, v := int(c[1]>>4), int(c[1]&15)
		if h < 1 || h > 4 || v < 1 || v > 4 {
			return fmt.Errorf("%w: jpeg: sampling factors %dx%d", ErrCorrupt, h, v)
		}
		j.comps[k] = jpegComp{id: c[0], h: h, v: v}
		j.hmax, j.vmax = max(j.hmax, h), max(j.vmax, v)
	}
	return nil
}

// scan counts the scan whose header is seg and skips its entropy-coded
// data, which starts at b[start]; it returns where the next marker is.
func (j *jpegInfo) scan(seg, b []byte, start int, lim ScanLimits) (int, error) {
	if j.comps == nil {
		return 0, fmt.Errorf("%w: jpeg: a scan before the frame header", ErrCorrupt)
	}
	j.scans++
	if lim.MaxScans > 0 && j.scans > lim.MaxScans {
		return 0, fmt.Errorf("%w: jpeg: more than %d scans", ErrTooManyScans, lim.MaxScans)
	}
	if len(seg) < 1 {
		return 0, fmt.Errorf("%w: jpeg: short scan header", ErrCorrupt)
	}
	ns := int(seg[0])
	if ns < 1 || ns > len(j.comps) || len(seg) < 1+2*ns+3 {
		return 0, fmt.Errorf("%w: jpeg: scan header with %d components", ErrCorrupt, ns)
	}
	var sel [4]jpegComp
	for k := range ns {
		id := seg[1+2*k]
		found := false
		for _, c := range j.comps {
			if c.id == id {
				sel[k], found = c, true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("%w: jpeg: scan names component %d, not in the frame", ErrCorrupt, id)
		}
	}
	ss := seg[1+2*ns]
	blocks := j.scanBlocks(sel[:ns])
	j.visits += blocks
	if fb := j.frameBlocks(); lim.MaxVisitsPerBlock > 0 && j.visits > int64(lim.MaxVisitsPerBlock)*fb {
		return 0, fmt.Errorf("%w: jpeg: the scans cover each block more than %d times", ErrTooManyScans, lim.MaxVisitsPerBlock)
	}
	// The entropy-coded data runs to the next marker other than a restart.
	end := start
	for {
		k := bytes.IndexByte(b[end:], 0xFF)
		if k < 0 || end+k+1 >= len(b) {
			return 0, fmt.Errorf("%w: jpeg: truncated in scan %d", ErrCorrupt, j.scans)
		}
		end += k
		if x := b[end+1]; x != 0 && x != 0xFF && (x < 0xD0 || x > 0xD7) {
			break
		}
		end++
		if b[end] != 0xFF {
			end++
		}
	}
	// A Huffman-coded scan that includes DC codes each block with at least
	// one bit (the shortest code); arithmetic coding can do with less.
	if ss == 0 && !j.arithmetic && int64(end-start)*8 < blocks {
		return 0, fmt.Errorf("%w: jpeg: scan %d has %d bytes for %d blocks (truncated data)", ErrCorrupt, j.scans, end-start, blocks)
	}
	return end, nil
}
