package imagedecode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"sync"

	"golang.org/x/image/webp"

	"github.com/lookalike-dev/lookalike/preprocess/internal/turbojpeg"
)

// Options steer one decode.
type Options struct {
	// MinScale is the smallest decoded size, as a fraction of the stored
	// size along each axis, the caller can work from. A JPEG is decoded at
	// the smallest power-of-two DCT scale (1/2, 1/4, 1/8) that is >= MinScale.
	// 0 or >= 1 means full size.
	MinScale float64
	// Fast trades a little exactness in the JPEG IDCT and chroma upsampling
	// for speed.
	Fast bool
	// Background is the RGB colour alpha is composited on.
	Background [3]uint8
	// PureGo disables libjpeg-turbo even when it is linked in.
	PureGo bool
	// Budget is the most bytes one decode may be expected to allocate
	// (ErrTooComplex above it); 0 means no limit.
	Budget int64
	// Admit, when set, reserves each decoder's expected bytes before it
	// runs; the reservation is held until Image.Release.
	Admit Admit
}

// Image is a decoded image, read row by row as packed RGB.
type Image struct {
	Config
	// W and H are the decoded size (smaller than the stored size after a
	// scaled decode).
	W, H int
	// Scale is decoded pixels per stored pixel (1, 1/2, 1/4 or 1/8).
	Scale float64
	// Decoder names the path taken: "turbojpeg" or "go".
	Decoder string

	rgb  []byte      // packed RGB, when decoded that way
	img  image.Image // otherwise the decoded image
	bg   [3]uint8
	pal  []byte // composited palette for *image.Paletted
	pool *Pool
	// release gives back the decode's reserved bytes (Options.Admit).
	release func()
	// frame is a GIF's first frame when it covers less than the screen.
	frame *image.Paletted
}

// Pool recycles the large pixel buffers of scaled JPEG decodes.
type Pool struct{ p sync.Pool }

func (p *Pool) get() []byte {
	if p == nil {
		return nil
	}
	if b, ok := p.p.Get().(*[]byte); ok {
		return *b
	}
	return nil
}

func (p *Pool) put(b []byte) {
	if p == nil || b == nil {
		return
	}
	p.p.Put(&b)
}

// Release returns pooled buffers; the Image must not be used afterwards.
func (m *Image) Release() {
	if m.rgb != nil {
		m.pool.put(m.rgb[:0])
		m.rgb = nil
	}
	m.img, m.frame = nil, nil
	if m.release != nil {
		m.release()
		m.release = nil
	}
}

// powerOfTwoFactor is the smallest of 1/8, 1/4, 1/2, 1 that is >= min.
func powerOfTwoFactor(min float64) turbojpeg.Factor {
	for _, d := range []int{8, 4, 2} {
		if 1/float64(d) >= min {
			return turbojpeg.Factor{Num: 1, Denom: d}
		}
	}
	return turbojpeg.Factor{Num: 1, Denom: 1}
}

// admit checks a decoder's expected bytes against the budget and reserves
// them.
func (opt Options) admit(decoder, format string, n int64) (func(), error) {
	if opt.Budget > 0 && n > opt.Budget {
		return nil, fmt.Errorf("%w: decoding this %s would take about %d MiB, the limit is %d MiB", ErrTooComplex, format, n>>20, opt.Budget>>20)
	}
	if opt.Admit == nil {
		return noRelease, nil
	}
	return opt.Admit(decoder, n)
}

// Cost is the bytes the first decoder Decode tries is expected to allocate.
func (cfg Config) Cost(opt Options) (decoder string, bytes int64) {
	if cfg.Format == JPEG && cfg.jpeg != nil && turbojpeg.Available() && !opt.PureGo {
		return DecoderTurbo, turboCost(cfg.jpeg, powerOfTwoFactor(opt.MinScale))
	}
	return DecoderGo, cfg.goBytes
}

// Decode decodes data, which Inspect has accepted as cfg. A JPEG goes to
// libjpeg-turbo when it is linked in; what it refuses or only warns about
// gets a second opinion from image/jpeg, so both builds accept and refuse
// the same files, when that decode fits the budget too.
func Decode(ctx context.Context, data []byte, cfg Config, opt Options, pool *Pool) (m *Image, err error) {
	m = &Image{Config: cfg, Scale: 1, bg: opt.Background, pool: pool}
	if j := cfg.jpeg; j != nil && len(j.comps) == 4 && j.adobe < 0 {
		// Neither CMYK convention can be told apart without the marker;
		// image/jpeg refuses these too.
		return nil, fmt.Errorf("%w: jpeg: 4-component image without an Adobe marker (unknown colour model)", ErrCorrupt)
	}
	decoder, cost := cfg.Cost(opt)
	release, err := opt.admit(decoder, cfg.Format, cost)
	if err != nil {
		return nil, err
	}
	if decoder == DecoderTurbo {
		f := powerOfTwoFactor(opt.MinScale)
		pix, w, h, terr := turbojpeg.DecodeRGB(ctx, data, f, opt.Fast, pool.get())
		if terr == nil {
			m.rgb, m.W, m.H, m.Scale, m.Decoder, m.release = pix, w, h, f.Float(), DecoderTurbo, release
			return m, nil
		}
		pool.put(pix[:0])
		release()
		if ctx.Err() != nil {
			return nil, terr // stopped: the caller gave up
		}
		release, err = opt.admit(DecoderGo, cfg.Format, cfg.goBytes)
		if errors.Is(err, ErrTooComplex) {
			return nil, fmt.Errorf("%w: decoding jpeg: %v (and %v)", ErrCorrupt, terr, err)
		}
		if err != nil {
			return nil, err
		}
	}
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("%w: decoding %s: panic: %v", ErrCorrupt, cfg.Format, r)
		}
		if err != nil {
			release()
		}
	}()
	if err := ctx.Err(); err != nil {
		return nil, err // the Go decoders cannot be stopped once started
	}
	var img image.Image
	rd := bytes.NewReader(data)
	switch cfg.Format {
	case JPEG:
		img, err = jpeg.Decode(rd)
	case PNG:
		img, err = png.Decode(rd)
	case GIF:
		img, err = gif.Decode(rd) // the first frame
	case WebP:
		img, err = webp.Decode(rd)
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnsupported, cfg.Format)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: decoding %s: %v", ErrCorrupt, cfg.Format, err)
	}
	b := img.Bounds()
	screen := image.Rect(0, 0, cfg.Width, cfg.Height)
	if p, ok := img.(*image.Paletted); ok && cfg.Format == GIF && b != screen && b.In(screen) {
		// A first frame smaller than the logical screen: the rest of the
		// screen is transparent (Row reads it so, with no screen-sized copy).
		m.frame, b = p, screen
	} else if b.Dx() != cfg.Width || b.Dy() != cfg.Height {
		return nil, fmt.Errorf("%w: %s header says %dx%d, pixels are %dx%d", ErrCorrupt, cfg.Format, cfg.Width, cfg.Height, b.Dx(), b.Dy())
	}
	m.img, m.W, m.H, m.Decoder, m.release = img, b.Dx(), b.Dy(), DecoderGo, release
	if p, ok := img.(*image.Paletted); ok {
		m.pal = make([]byte, 3*256)
		for i, c := range p.Palette {
			if i >= 256 {
				break
			}
			r, g, bl, a := c.RGBA()
			px := compositePremul(uint8(r>>8), uint8(g>>8), uint8(bl>>8), uint8(a>>8), m.bg)
			copy(m.pal[3*i:], px[:])
		}
	}
	return m, nil
}

// compositePremul puts premultiplied r,g,b,a over bg.
func compositePremul(r, g, b, a uint8, bg [3]uint8) [3]uint8 {
	if a == 255 {
		return [3]uint8{r, g, b}
	}
	ia := uint32(255 - a)
	return [3]uint8{
		clamp8(uint32(r) + (uint32(bg[0])*ia+127)/255),
		clamp8(uint32(g) + (uint32(bg[1])*ia+127)/255),
		clamp8(uint32(b) + (uint32(bg[2])*ia+127)/255),
	}
}

func clamp8(v uint32) uint8 {
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// over puts straight (non-premultiplied) c with alpha a over bg.
func over(c, a, bg uint8) uint8 {
	return uint8((uint32(c)*uint32(a) + uint32(bg)*uint32(255-a) + 127) / 255)
}

// Row returns packed RGB for columns [x0,x1) of decoded row y. The result
// may alias the image (do not modify it) or *scratch, which it grows.
func (m *Image) Row(y, x0, x1 int, scratch *[]byte) []byte {
	if m.rgb != nil {
		o := (y*m.W + x0) * 3
		return m.rgb[o : o+(x1-x0)*3]
	}
	n := (x1 - x0) * 3
	if cap(*scratch) < n {
		*scratch = make([]byte, n)
	}
	d := (*scratch)[:n]
	bg := m.bg
	if f := m.frame; f != nil {
		// Transparent (the background) outside the frame.
		for i := 0; i < n; i += 3 {
			d[i], d[i+1], d[i+2] = bg[0], bg[1], bg[2]
		}
		if y < f.Rect.Min.Y || y >= f.Rect.Max.Y {
			return d
		}
		lo, hi := max(x0, f.Rect.Min.X), min(x1, f.Rect.Max.X)
		for x := lo; x < hi; x++ {
			p := int(f.Pix[f.PixOffset(x, y)]) * 3
			k := (x - x0) * 3
			d[k], d[k+1], d[k+2] = m.pal[p], m.pal[p+1], m.pal[p+2]
		}
		return d
	}
	switch im := m.img.(type) {
	case *image.YCbCr:
		yy := y + im.Rect.Min.Y
		for x := x0; x < x1; x++ {
			xx := x + im.Rect.Min.X
			yi := im.YOffset(xx, yy)
			ci := im.COffset(xx, yy)
			r, g, b := color.YCbCrToRGB(im.Y[yi], im.Cb[ci], im.Cr[ci])
			k := (x - x0) * 3
			d[k], d[k+1], d[k+2] = r, g, b
		}
	case *image.NYCbCrA:
		yy := y + im.Rect.Min.Y
		for x := x0; x < x1; x++ {
			xx := x + im.Rect.Min.X
			yi := im.YOffset(xx, yy)
			ci := im.COffset(xx, yy)
			a := im.A[im.AOffset(xx, yy)]
			r, g, b := color.YCbCrToRGB(im.Y[yi], im.Cb[ci], im.Cr[ci])
			k := (x - x0) * 3
			d[k], d[k+1], d[k+2] = over(r, a, bg[0]), over(g, a, bg[1]), over(b, a, bg[2])
		}
	case *image.RGBA:
		s := im.Pix[im.PixOffset(x0+im.Rect.Min.X, y+im.Rect.Min.Y):]
		for i := 0; i < x1-x0; i++ {
			px := compositePremul(s[4*i], s[4*i+1], s[4*i+2], s[4*i+3], bg)
			d[3*i], d[3*i+1], d[3*i+2] = px[0], px[1], px[2]
		}
	case *image.NRGBA:
		s := im.Pix[im.PixOffset(x0+im.Rect.Min.X, y+im.Rect.Min.Y):]
		for i := 0; i < x1-x0; i++ {
			a := s[4*i+3]
			if a == 255 {
				d[3*i], d[3*i+1], d[3*i+2] = s[4*i], s[4*i+1], s[4*i+2]
				continue
			}
			d[3*i], d[3*i+1], d[3*i+2] = over(s[4*i], a, bg[0]), over(s[4*i+1], a, bg[1]), over(s[4*i+2], a, bg[2])
		}
	case *image.NRGBA64:
		s := im.Pix[im.PixOffset(x0+im.Rect.Min.X, y+im.Rect.Min.Y):]
		for i := 0; i < x1-x0; i++ {
			a := s[8*i+6]
			d[3*i], d[3*i+1], d[3*i+2] = over(s[8*i], a, bg[0]), over(s[8*i+2], a, bg[1]), over(s[8*i+4], a, bg[2])
		}
	case *image.RGBA64:
		s := im.Pix[im.PixOffset(x0+im.Rect.Min.X, y+im.Rect.Min.Y):]
		for i := 0; i < x1-x0; i++ {
			px := compositePremul(s[8*i], s[8*i+2], s[8*i+4], s[8*i+6], bg)
			d[3*i], d[3*i+1], d[3*i+2] = px[0], px[1], px[2]
		}
	case *image.Gray:
		s := im.Pix[im.PixOffset(x0+im.Rect.Min.X, y+im.Rect.Min.Y):]
		for i := 0; i < x1-x0; i++ {
			d[3*i], d[3*i+1], d[3*i+2] = s[i], s[i], s[i]
		}
	case *image.Gray16:
		s := im.Pix[im.PixOffset(x0+im.Rect.Min.X, y+im.Rect.Min.Y):]
		for i := 0; i < x1-x0; i++ {
			d[3*i], d[3*i+1], d[3*i+2] = s[2*i], s[2*i], s[2*i]
		}
	case *image.Paletted:
		s := im.Pix[im.PixOffset(x0+im.Rect.Min.X, y+im.Rect.Min.Y):]
		for i := 0; i < x1-x0; i++ {
			p := int(s[i]) * 3
			d[3*i], d[3*i+1], d[3*i+2] = m.pal[p], m.pal[p+1], m.pal[p+2]
		}
	case *image.CMYK:
		s := im.Pix[im.PixOffset(x0+im.Rect.Min.X, y+im.Rect.Min.Y):]
		for i := 0; i < x1-x0; i++ {
			r, g, b := color.CMYKToRGB(s[4*i], s[4*i+1], s[4*i+2], s[4*i+3])
			d[3*i], d[3*i+1], d[3*i+2] = r, g, b
		}
	default:
		mn := im.Bounds().Min
		for x := x0; x < x1; x++ {
			c := color.NRGBAModel.Convert(im.At(x+mn.X, y+mn.Y)).(color.NRGBA)
			k := (x - x0) * 3
			d[k], d[k+1], d[k+2] = over(c.R, c.A, bg[0]), over(c.G, c.A, bg[1]), over(c.B, c.A, bg[2])
		}
	}
	return d
}
