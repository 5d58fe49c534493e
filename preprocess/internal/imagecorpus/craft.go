package imagecorpus

import "fmt"

// Crafted describes a JPEG written marker by marker, with every coefficient
// zero (a flat mid-grey image): frames far larger than their bytes, as
// decode bombs are.
type Crafted struct {
	W, H int
	// Comps is 1 (gray), 3 (YCbCr) or 4 (CMYK or YCCK, by Adobe).
	Comps int
	// Subsampled gives the first component 2x2 sampling (4:2:0).
	Subsampled  bool
	Progressive bool
	// Adobe is the APP14 colour transform (0 CMYK/RGB, 1 YCbCr, 2 YCCK);
	// -1 writes no Adobe marker.
	Adobe int
	// Sized makes the DC (or baseline) scan as long as the frame needs, one
	// bit a block: a complete, valid image. Otherwise the scan holds 16
	// bytes, as a truncated upload does.
	Sized bool
	// ACScans adds progressive AC scans (one component each, in turn) that
	// code every block with end-of-band runs of 32767 blocks.
	ACScans int
	// NoDC leaves the DC scan out (a bogus progression libjpeg only warns
	// about).
	NoDC bool
	// Truncate ends the file after the scans, without the end-of-image
	// marker.
	Truncate bool
}

// Name is a short description for test names.
func (c Crafted) Name() string {
	kind := map[int]string{1: "gray", 3: "ycbcr", 4: "cmyk"}[c.Comps]
	if c.Comps == 4 && c.Adobe == 2 {
		kind = "ycck"
	}
	if c.Subsampled {
		kind += "-420"
	}
	mode := "baseline"
	if c.Progressive {
		mode = "progressive"
	}
	s := fmt.Sprintf("%s-%s-%dx%d", kind, mode, c.W, c.H)
	if c.Sized {
		s += "-sized"
	}
	if c.ACScans > 0 {
		s += fmt.Sprintf("-%dac", c.ACScans)
	}
	if c.NoDC {
		s += "-nodc"
	}
	if c.Truncate {
		s += "-truncated"
	}
	return s
}

// bitWriter writes MSB-first bits with JPEG byte stuffing.
type bitWriter struct {
	out   []byte
	acc   uint32
	nbits uint
}

func (w *bitWriter) write(v uint32, n uint) {
	for n > 0 {
		n--
		w.acc = w.acc<<1 | (v>>n)&1
		w.nbits++
		if w.nbits == 8 {
			w.byteOut(byte(w.acc))
			w.acc, w.nbits = 0, 0
		}
	}
}

func (w *bitWriter) byteOut(b byte) {
	w.out = append(w.out, b)
	if b == 0xFF {
		w.out = append(w.out, 0)
	}
}

func (w *bitWriter) flush() []byte {
	if w.nbits > 0 {
		w.write(0x7F, 8-w.nbits) // pad with ones
	}
	return w.out
}

func segment(m byte, payload []byte) []byte {
	b := []byte{0xFF, m, byte((len(payload) + 2) >> 8), byte(len(payload) + 2)}
	return append(b, payload...)
}

// huffTable is a DHT payload of one table holding one symbol with the
// 1-bit code 0.
func huffTable(class, id, symbol byte) []byte {
	b := []byte{class<<4 | id, 1}
	b = append(b, make([]byte, 15)...)
	return append(b, symbol)
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// Craft writes the JPEG c describes.
func Craft(c Crafted) []byte {
	b := []byte{0xFF, 0xD8}
	if c.Adobe >= 0 {
		b = append(b, segment(0xEE, []byte{'A', 'd', 'o', 'b', 'e', 0, 100, 0, 0, 0, 0, byte(c.Adobe)})...)
	}
	dqt := append([]byte{0}, make([]byte, 64)...)
	for i := 1; i < len(dqt); i++ {
		dqt[i] = 1
	}
	b = append(b, segment(0xDB, dqt)...)
	hmax, vmax := 1, 1
	samp := make([][2]int, c.Comps)
	for i := range samp {
		samp[i] = [2]int{1, 1}
	}
	if c.Subsampled {
		samp[0], hmax, vmax = [2]int{2, 2}, 2, 2
		if c.Comps == 4 {
			samp[3] = [2]int{2, 2}
		}
	}
	sof := []byte{8, byte(c.H >> 8), byte(c.H), byte(c.W >> 8), byte(c.W), byte(c.Comps)}
	for i := range c.Comps {
		sof = append(sof, byte(i+1), byte(samp[i][0]<<4|samp[i][1]), 0)
	}
	m := byte(0xC0)
	if c.Progressive {
		m = 0xC2
	}
	b = append(b, segment(m, sof)...)
	b = append(b, segment(0xC4, huffTable(0, 0, 0))...) // DC: category 0
	ac := byte(0)                                       // baseline AC: end of block
	if c.Progressive {
		ac = 0xE0 // EOB14: an end-of-band run of 2^14 + 14 bits
	}
	b = append(b, segment(0xC4, huffTable(1, 0, ac))...)

	mx, my := ceilDiv(c.W, 8*hmax), ceilDiv(c.H, 8*vmax)
	perMCU := 0
	for _, s := range samp {
		perMCU += s[0] * s[1]
	}
	sos := func(comps []int, ss, se byte) []byte {
		p := []byte{byte(len(comps))}
		for _, i := range comps {
			p = append(p, byte(i+1), 0x00)
		}
		return segment(0xDA, append(p, ss, se, 0))
	}
	all := make([]int, c.Comps)
	for i := range all {
		all[i] = i
	}
	if !c.NoDC {
		b = append(b, sos(all, 0, 63*boolInt(!c.Progressive))...)
		bitsPerBlock := 1
		if !c.Progressive {
			bitsPerBlock = 2 // DC category 0, then end of block
		}
		n := 16
		if c.Sized {
			n = ceilDiv(mx*my*perMCU*bitsPerBlock, 8)
		}
		b = append(b, make([]byte, n)...) // zero bits: DC difference 0 (and EOB)
	}
	for k := range c.ACScans {
		ci := k % c.Comps
		s := samp[ci]
		blocks := ceilDiv(ceilDiv(c.W*s[0], hmax), 8) * ceilDiv(ceilDiv(c.H*s[1], vmax), 8)
		b = append(b, sos([]int{ci}, 1, 63)...)
		var w bitWriter
		for range ceilDiv(blocks, 32767) {
			w.write(0, 1)        // EOB14
			w.write(1<<14-1, 14) // run 2^14 + 16383
		}
		b = append(b, w.flush()...)
	}
	if !c.Truncate {
		b = append(b, 0xFF, 0xD9)
	}
	return b
}

func boolInt(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// Bombs is the tiny-bomb corpus: JPEGs of well under a KiB declaring a
// w x h frame, gray, YCbCr, CMYK and YCCK, baseline and progressive,
// truncated and complete (an end-of-image marker after a short scan).
func Bombs(w, h int) []Crafted {
	var out []Crafted
	for _, k := range []struct{ comps, adobe int }{{1, -1}, {3, -1}, {4, 0}, {4, 2}} {
		for _, prog := range []bool{false, true} {
			for _, trunc := range []bool{true, false} {
				out = append(out, Crafted{W: w, H: h, Comps: k.comps, Adobe: k.adobe, Progressive: prog, Truncate: trunc, Subsampled: k.comps == 3})
			}
		}
	}
	return out
}
