package resample

import "math"

// Geometry describes the decoded pixels a plan reads.
type Geometry struct {
	// StoredW, StoredH: full-resolution stored size (before orientation).
	StoredW, StoredH int
	// Orientation is the EXIF orientation 1..8.
	Orientation int
	// DecodedW, DecodedH: the size actually decoded.
	DecodedW, DecodedH int
	// Scale is decoded pixels per stored pixel (exact DCT factor, e.g. 1/4).
	Scale float64
}

// axis holds the filter taps for the output samples along one stored axis.
type axis struct {
	n      int     // samples
	valid  []bool  // false: the sample is padding (letterbox)
	start  []int32 // first source index of each sample
	count  []int32 // taps of each sample
	woff   []int32 // offset of each sample's weights in w
	w      []float32
	lo, hi int // source index range used by all samples, inclusive
}

// build computes the taps of n output samples whose source coordinates
// (pixel-centre, in decoded pixels) are given by coord; ratio is decoded
// pixels per output pixel; size is the decoded length of the axis.
func (a *axis) build(n int, valid func(i int) bool, coord func(i int) float64, ratio float64, size int, k Kernel) {
	a.n = n
	a.valid = grow(a.valid, n)
	a.start = grow(a.start, n)
	a.count = grow(a.count, n)
	a.woff = grow(a.woff, n)
	a.w = a.w[:0]
	a.lo, a.hi = size, -1
	fs := math.Max(1, ratio)
	for i := range n {
		a.valid[i] = valid(i)
		if !a.valid[i] {
			a.start[i], a.count[i], a.woff[i] = 0, 0, int32(len(a.w))
			continue
		}
		c := coord(i)
		var lo, hi int
		off := len(a.w)
		if k.Support == 0 {
			lo = min(max(int(math.Floor(c+0.5)), 0), size-1)
			hi = lo
			a.w = append(a.w, 1)
		} else {
			r := k.Support * fs
			lo = max(int(math.Ceil(c-r)), 0)
			hi = min(int(math.Floor(c+r)), size-1)
			sum := 0.0
			for j := lo; j <= hi; j++ {
				v := k.Fn((float64(j) - c) / fs)
				a.w = append(a.w, float32(v))
				sum += v
			}
			if hi < lo || sum == 0 { // no usable taps: nearest
				lo = min(max(int(math.Floor(c+0.5)), 0), size-1)
				hi = lo
				a.w = append(a.w[:off], 1)
			} else {
				for j := off; j < len(a.w); j++ {
					a.w[j] = float32(float64(a.w[j]) / sum)
				}
			}
		}
		a.start[i], a.count[i], a.woff[i] = int32(lo), int32(hi-lo+1), int32(off)
		a.lo, a.hi = min(a.lo, lo), max(a.hi, hi)
	}
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// orientation table: which oriented axis feeds each stored axis, and
// whether it runs backwards.
type orient struct {
	transposed   bool // stored x comes from oriented Y
	flipX, flipY bool // stored x / y coordinates are mirrored
}

func orientationOf(o int) orient {
	switch o {
	case 2:
		return orient{flipX: true}
	case 3:
		return orient{flipX: true, flipY: true}
	case 4:
		return orient{flipY: true}
	case 5:
		return orient{transposed: true}
	case 6:
		return orient{transposed: true, flipY: true}
	case 7:
		return orient{transposed: true, flipX: true, flipY: true}
	case 8:
		return orient{transposed: true, flipX: true}
	}
	return orient{}
}

// Plan is the precomputed mapping from decoded pixels to one output.
type Plan struct {
	t      Target
	or     orient
	x, y   axis // stored axes
	byRow  [][]rowUse
	rowLo  int
	outW   int
	outH   int
	layout Layout
}

type rowUse struct {
	j int32 // stored-y sample
	w float32
}

// Prepare (re)computes p for g and t, reusing p's memory.
func (p *Plan) Prepare(g Geometry, t Target) {
	p.t, p.or = t, orientationOf(g.Orientation)
	ow, oh := Oriented(g.StoredW, g.StoredH, g.Orientation)
	l := LayoutFor(t, ow, oh)
	p.layout, p.outW, p.outH = l, t.W, t.H
	// Along oriented X: output X shows resized X+OffX, whose centre is at
	// (X+OffX+0.5)*ow/RW in full-resolution oriented pixels.
	sx, sy := float64(ow)/float64(l.RW), float64(oh)/float64(l.RH)
	type oaxis struct {
		n      int
		off    int
		r      int
		s      float64
		length float64 // full-resolution length along the oriented axis
	}
	X := oaxis{n: t.W, off: l.OffX, r: l.RW, s: sx, length: float64(ow)}
	Y := oaxis{n: t.H, off: l.OffY, r: l.RH, s: sy, length: float64(oh)}
	build := func(dst *axis, src oaxis, flip bool, decoded int) {
		dst.build(src.n,
			func(i int) bool { r := i + src.off; return r >= 0 && r < src.r },
			func(i int) float64 {
				u := (float64(i+src.off) + 0.5) * src.s
				if flip {
					u = src.length - u
				}
				return u*g.Scale - 0.5
			},
			src.s*g.Scale, decoded, t.Kernel)
	}
	if p.or.transposed {
		build(&p.x, Y, p.or.flipX, g.DecodedW)
		build(&p.y, X, p.or.flipY, g.DecodedH)
	} else {
		build(&p.x, X, p.or.flipX, g.DecodedW)
		build(&p.y, Y, p.or.flipY, g.DecodedH)
	}
	// Invert the y taps: for each source row, which samples use it.
	p.rowLo = p.y.lo
	nrows := max(0, p.y.hi-p.y.lo+1)
	if cap(p.byRow) < nrows {
		p.byRow = make([][]rowUse, nrows)
	}
	p.byRow = p.byRow[:nrows]
	for i := range p.byRow {
		p.byRow[i] = p.byRow[i][:0]
	}
	for j := 0; j < p.y.n; j++ {
		if !p.y.valid[j] {
			continue
		}
		s, o := int(p.y.start[j]), int(p.y.woff[j])
		for k := range int(p.y.count[j]) {
			r := s + k - p.rowLo
			p.byRow[r] = append(p.byRow[r], rowUse{j: int32(j), w: p.y.w[o+k]})
		}
	}
}
