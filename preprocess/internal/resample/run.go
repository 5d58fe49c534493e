package resample

import (
	"image"
)

// Source hands out packed 8-bit RGB for columns [x0,x1) of decoded row y.
// It may return its own memory or *scratch, which it grows as needed.
type Source interface {
	Row(y, x0, x1 int, scratch *[]byte) []byte
}

// Scratch is the reusable working memory of Run.
type Scratch struct {
	acc  []float32 // stored-frame result, y.n x x.n x 3, in 8-bit units
	hrow []float32
	row  []byte
}

// Run filters src through p into s. check, when not nil, is called every
// few dozen rows; its error aborts the run (a deadline, say).
func (p *Plan) Run(src Source, s *Scratch, check func() error) error {
	nx, ny := p.x.n, p.y.n
	s.acc = grow(s.acc, nx*ny*3)
	clear(s.acc)
	s.hrow = grow(s.hrow, nx*3)
	if p.x.hi < p.x.lo {
		return nil // nothing visible (all padding)
	}
	x0, x1 := p.x.lo, p.x.hi+1
	for r, uses := range p.byRow {
		if len(uses) == 0 {
			continue
		}
		if check != nil && r%32 == 0 {
			if err := check(); err != nil {
				return err
			}
		}
		row := src.Row(p.rowLo+r, x0, x1, &s.row)
		h := s.hrow
		for i := 0; i < nx; i++ {
			if !p.x.valid[i] {
				h[3*i], h[3*i+1], h[3*i+2] = 0, 0, 0
				continue
			}
			st := (int(p.x.start[i]) - x0) * 3
			cnt := int(p.x.count[i])
			w := p.x.w[p.x.woff[i] : int(p.x.woff[i])+cnt]
			px := row[st : st+cnt*3]
			var r0, g0, b0 float32
			for k, wk := range w {
				r0 += wk * float32(px[3*k])
				g0 += wk * float32(px[3*k+1])
				b0 += wk * float32(px[3*k+2])
			}
			h[3*i], h[3*i+1], h[3*i+2] = r0, g0, b0
		}
		for _, u := range uses {
			a := s.acc[int(u.j)*nx*3 : (int(u.j)+1)*nx*3]
			w := u.w
			for i, v := range h {
				a[i] += w * v
			}
		}
	}
	return nil
}

// value returns the 0..255 value of oriented output (X,Y), channel c (RGB),
// and whether it is inside the image (false: padding).
func (p *Plan) at(s *Scratch, X, Y int) (int, bool) {
	i, j := X, Y
	if p.or.transposed {
		i, j = Y, X
	}
	if !p.x.valid[i] || !p.y.valid[j] {
		return 0, false
	}
	return (j*p.x.n + i) * 3, true
}

func round8(v float32) uint8 {
	if v <= 0 {
		return 0
	}
	if v >= 255 {
		return 255
	}
	return uint8(v + 0.5)
}

// Order is how Write lays out the output levels.
type Order struct {
	BGR  bool // channels B, G, R instead of R, G, B
	NHWC bool // interleaved pixels instead of one plane per channel
	// Background fills padding (letterbox), in 8-bit RGB.
	Background [3]uint8
}

// Write writes the output, W*H*3 8-bit levels, into dst: each value rounded
// to a whole level, as an 8-bit resize would. The model's scale, mean and
// std come after (preprocessv1.Spec.Widen).
func (p *Plan) Write(s *Scratch, o Order, dst []uint8) {
	W, H := p.outW, p.outH
	plane := W * H
	ch := [3]int{0, 1, 2}
	if o.BGR {
		ch = [3]int{2, 1, 0}
	}
	for Y := 0; Y < H; Y++ {
		for X := 0; X < W; X++ {
			v := o.Background
			if at, ok := p.at(s, X, Y); ok {
				v = [3]uint8{round8(s.acc[at]), round8(s.acc[at+1]), round8(s.acc[at+2])}
			}
			if o.NHWC {
				b := (Y*W + X) * 3
				dst[b], dst[b+1], dst[b+2] = v[ch[0]], v[ch[1]], v[ch[2]]
			} else {
				b := Y*W + X
				dst[b], dst[plane+b], dst[2*plane+b] = v[ch[0]], v[ch[1]], v[ch[2]]
			}
		}
	}
}

// Render writes the output as an 8-bit RGBA image (for hashing and tests).
func (p *Plan) Render(s *Scratch, bg [3]uint8) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, p.outW, p.outH))
	for Y := 0; Y < p.outH; Y++ {
		for X := 0; X < p.outW; X++ {
			d := img.Pix[img.PixOffset(X, Y):]
			if o, ok := p.at(s, X, Y); ok {
				d[0], d[1], d[2] = round8(s.acc[o]), round8(s.acc[o+1]), round8(s.acc[o+2])
			} else {
				d[0], d[1], d[2] = bg[0], bg[1], bg[2]
			}
			d[3] = 255
		}
	}
	return img
}
