// Package reference is the slow, obviously-right pipeline the fast path is
// measured against: full-resolution decode with the Go decoders, EXIF
// orientation applied to the pixels, alpha composited, imaging's Lanczos3
// resize of the whole image, centre crop, then normalisation. The bench and
// the accuracy tests use it; the service does not.
package reference

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	_ "image/gif"  // register
	_ "image/jpeg" // register
	_ "image/png"  // register

	"github.com/disintegration/imaging"
	_ "golang.org/x/image/webp" // register

	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"

	"github.com/lookalike-dev/lookalike/preprocess/internal/imagedecode"
	"github.com/lookalike-dev/lookalike/preprocess/internal/resample"
)

// Decoder picks the full-resolution decoder of the reference.
type Decoder int

// Decoders.
const (
	// GoDecoder uses the standard library decoders and image/draw (fully
	// independent of the service's code).
	GoDecoder Decoder = iota
	// ServiceDecoder uses the service's decoder at full scale (libjpeg-turbo
	// when linked in), so only the fast path's reduction is compared.
	ServiceDecoder
)

// Oriented decodes data at full resolution, applies the EXIF orientation and
// composites alpha on bg.
func Oriented(data []byte, bg [3]uint8, dec Decoder) (*image.NRGBA, imagedecode.Config, error) {
	cfg, err := imagedecode.Inspect(data, imagedecode.Limits{})
	if err != nil {
		return nil, cfg, err
	}
	var flat *image.NRGBA
	if dec == ServiceDecoder {
		m, err := imagedecode.Decode(context.Background(), data, cfg, imagedecode.Options{MinScale: 1, Background: bg}, nil)
		if err != nil {
			return nil, cfg, err
		}
		defer m.Release()
		flat = image.NewNRGBA(image.Rect(0, 0, m.W, m.H))
		var scratch []byte
		for y := range m.H {
			row := m.Row(y, 0, m.W, &scratch)
			d := flat.Pix[y*flat.Stride:]
			for x := range m.W {
				d[4*x], d[4*x+1], d[4*x+2], d[4*x+3] = row[3*x], row[3*x+1], row[3*x+2], 255
			}
		}
	} else {
		img, _, err := image.Decode(bytes.NewReader(data))
		if err != nil {
			return nil, cfg, fmt.Errorf("decoding: %w", err)
		}
		// The stored size is the header's (a GIF's logical screen, which
		// its first frame may only partly cover).
		flat = image.NewNRGBA(image.Rect(0, 0, cfg.Width, cfg.Height))
		draw.Draw(flat, flat.Bounds(), image.NewUniform(color.NRGBA{bg[0], bg[1], bg[2], 255}), image.Point{}, draw.Src)
		draw.Draw(flat, img.Bounds(), img, img.Bounds().Min, draw.Over)
	}
	var o *image.NRGBA
	switch cfg.Orientation {
	case 2:
		o = imaging.FlipH(flat)
	case 3:
		o = imaging.Rotate180(flat)
	case 4:
		o = imaging.FlipV(flat)
	case 5:
		o = imaging.Transpose(flat)
	case 6:
		o = imaging.Rotate270(flat)
	case 7:
		o = imaging.Transverse(flat)
	case 8:
		o = imaging.Rotate90(flat)
	default:
		o = imaging.Clone(flat)
	}
	return o, cfg, nil
}

// Tensor is the reference NCHW/RGB float32 output for a shorter_crop or
// squash spec, with imaging's filter of the given name (Lanczos3 when the
// name is "lanczos3").
func Tensor(data []byte, spec preprocessv1.Spec, filter imaging.ResampleFilter) ([]float32, error) {
	return TensorWith(data, spec, filter, GoDecoder)
}

// TensorWith is Tensor with a choice of decoder.
func TensorWith(data []byte, spec preprocessv1.Spec, filter imaging.ResampleFilter, dec Decoder) ([]float32, error) {
	o, _, err := Oriented(data, [3]uint8{255, 255, 255}, dec)
	if err != nil {
		return nil, err
	}
	b := o.Bounds()
	k, err := resample.KernelFor(spec.Interpolation)
	if err != nil {
		return nil, err
	}
	l := resample.LayoutFor(resample.Target{Mode: spec.ResizeMode, W: spec.Width, H: spec.Height, Shorter: spec.ResizeShorter, Kernel: k}, b.Dx(), b.Dy())
	if l.OffX < 0 || l.OffY < 0 {
		return nil, fmt.Errorf("reference: resize mode %s with padding is not supported", spec.ResizeMode)
	}
	r := imaging.Resize(o, l.RW, l.RH, filter)
	c := imaging.Crop(r, image.Rect(l.OffX, l.OffY, l.OffX+spec.Width, l.OffY+spec.Height))
	lut := spec.Levels()
	out := make([]float32, 3*spec.Width*spec.Height)
	plane := spec.Width * spec.Height
	for y := 0; y < spec.Height; y++ {
		for x := 0; x < spec.Width; x++ {
			p := c.Pix[c.PixOffset(x, y):]
			for ch := range 3 {
				out[ch*plane+y*spec.Width+x] = lut[ch][p[ch]]
			}
		}
	}
	return out, nil
}
