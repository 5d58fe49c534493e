// Package imagedecode turns untrusted image bytes into pixels: it sniffs the
// format, checks the byte and pixel limits from the header before any pixel
// buffer exists, reads the EXIF orientation, and decodes, at a reduced scale
// in the DCT domain when libjpeg-turbo is linked in and the caller allows it.
//
// Pixels are handed out row by row as packed 8-bit RGB with alpha already
// composited on a background, so the resampler needs no per-type code.
package imagedecode

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"

	"github.com/rwcarlsen/goexif/exif"
	"golang.org/x/image/webp"

	"github.com/lookalike-dev/lookalike/preprocess/internal/turbojpeg"
)

// Format names, as reported in the image facts.
const (
	JPEG = "jpeg"
	PNG  = "png"
	GIF  = "gif"
	WebP = "webp"
)

// Sentinel errors; every error this package returns wraps exactly one.
var (
	ErrEmpty       = errors.New("empty body")
	ErrUnsupported = errors.New("unsupported image format")
	ErrCorrupt     = errors.New("corrupt image")
	ErrTooLarge    = errors.New("image too large")
	ErrDimensions  = errors.New("image dimensions too large")
	// ErrTooComplex: decoding would allocate more than the per-image
	// budget (Options.Budget).
	ErrTooComplex = errors.New("image too complex to decode within the memory budget")
	// ErrTooManyScans: a progressive JPEG with more scans, or scans
	// covering its blocks more often, than ScanLimits allow.
	ErrTooManyScans = errors.New("too many scans")
)

// Limits bound what is decoded. Zero means no limit.
type Limits struct {
	MaxBytes  int64
	MaxPixels int64
	Scans     ScanLimits
}

// Config is what the header says, read without decoding pixels.
type Config struct {
	Format string
	// Width and Height are the stored size, before orientation.
	Width, Height int
	// Orientation is the EXIF orientation 1..8 (1 when absent or invalid).
	Orientation int

	jpeg     *jpegInfo // a JPEG's markers
	gifFrame int64     // a GIF's first frame's pixels
	goBytes  int64     // what the Go decoder allocates (goCost)
}

// Transposed reports whether the orientation swaps width and height.
func (c Config) Transposed() bool { return c.Orientation >= 5 }

// Sniff names the format from the magic bytes, or "".
func Sniff(b []byte) string {
	switch {
	case len(b) >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF:
		return JPEG
	case len(b) >= 8 && string(b[:8]) == "\x89PNG\r\n\x1a\n":
		return PNG
	case len(b) >= 6 && (string(b[:6]) == "GIF87a" || string(b[:6]) == "GIF89a"):
		return GIF
	case len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return WebP
	}
	return ""
}

// Inspect checks the limits and reads the header. It allocates nothing in
// proportion to the declared image size.
func Inspect(data []byte, lim Limits) (cfg Config, err error) {
	if len(data) == 0 {
		return Config{}, fmt.Errorf("%w: no image bytes", ErrEmpty)
	}
	if lim.MaxBytes > 0 && int64(len(data)) > lim.MaxBytes {
		return Config{}, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(data), lim.MaxBytes)
	}
	cfg.Format = Sniff(data)
	if cfg.Format == "" {
		return Config{}, fmt.Errorf("%w: not JPEG, PNG, GIF or WebP (starts %q)", ErrUnsupported, head(data))
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: reading %s header: panic: %v", ErrCorrupt, cfg.Format, r)
		}
	}()
	var ic image.Config
	switch cfg.Format {
	case JPEG:
		ic, err = jpeg.DecodeConfig(bytes.NewReader(data))
		if err != nil && turbojpeg.Available() {
			// image/jpeg refuses some valid files (e.g. arithmetic coding).
			if h, terr := turbojpeg.DecodeHeader(data); terr == nil {
				ic, err = image.Config{Width: h.Width, Height: h.Height}, nil
			}
		}
	case PNG:
		ic, err = png.DecodeConfig(bytes.NewReader(data))
	case GIF:
		ic, err = gif.DecodeConfig(bytes.NewReader(data))
	case WebP:
		// x/image/webp decodes some truncated files without an error; the
		// RIFF header says how long the file must be.
		if n := int64(binary.LittleEndian.Uint32(data[4:])); n+8 > int64(len(data)) {
			return Config{}, fmt.Errorf("%w: webp: RIFF declares %d bytes, have %d (truncated)", ErrCorrupt, n+8, len(data))
		}
		ic, err = webp.DecodeConfig(bytes.NewReader(data))
	}
	if err != nil {
		return Config{}, fmt.Errorf("%w: reading %s header: %v", ErrCorrupt, cfg.Format, err)
	}
	if ic.Width < 1 || ic.Height < 1 {
		return Config{}, fmt.Errorf("%w: %s declares %dx%d", ErrCorrupt, cfg.Format, ic.Width, ic.Height)
	}
	cfg.Width, cfg.Height = ic.Width, ic.Height
	if px := int64(ic.Width) * int64(ic.Height); lim.MaxPixels > 0 && px > lim.MaxPixels {
		return Config{}, fmt.Errorf("%w: %dx%d is %d pixels, the limit is %d", ErrDimensions, ic.Width, ic.Height, px, lim.MaxPixels)
	}
	switch cfg.Format {
	case JPEG:
		if cfg.jpeg, err = walkJPEG(data, lim.Scans); err != nil {
			return Config{}, err
		}
	case PNG:
		if err := walkPNG(data, cfg); err != nil {
			return Config{}, err
		}
	case GIF:
		if cfg.gifFrame, err = walkGIF(data); err != nil {
			return Config{}, err
		}
	}
	cfg.goBytes = goCost(cfg, data)
	cfg.Orientation = orientation(cfg.Format, data)
	return cfg, nil
}

func head(b []byte) []byte {
	if len(b) > 8 {
		return b[:8]
	}
	return b
}

// orientation reads the EXIF orientation with goexif from the container's
// EXIF block (JPEG APP1, PNG eXIf, WebP EXIF). Any problem means 1: a broken
// EXIF block must not cost the image.
func orientation(format string, data []byte) (o int) {
	var tiff []byte
	switch format {
	case JPEG:
		tiff = jpegExif(data)
	case PNG:
		tiff = pngExif(data)
	case WebP:
		tiff = webpExif(data)
	}
	if len(tiff) < 8 {
		return 1
	}
	defer func() {
		if recover() != nil {
			o = 1
		}
	}()
	x, err := exif.Decode(bytes.NewReader(tiff))
	if err != nil && x == nil {
		return 1
	}
	tag, err := x.Get(exif.Orientation)
	if err != nil {
		return 1
	}
	v, err := tag.Int(0)
	if err != nil || v < 1 || v > 8 {
		return 1
	}
	return v
}

// jpegExif walks the JPEG markers before the first scan and returns the TIFF
// block of the first "Exif\0\0" APP1 segment.
func jpegExif(b []byte) []byte {
	i := 2
	for i+4 <= len(b) {
		if b[i] != 0xFF {
			return nil
		}
		m := b[i+1]
		if m == 0xFF { // fill byte
			i++
			continue
		}
		if m == 0xD8 || (m >= 0xD0 && m <= 0xD7) || m == 0x01 {
			i += 2
			continue
		}
		if m == 0xDA || m == 0xD9 { // start of scan, end of image
			return nil
		}
		n := int(binary.BigEndian.Uint16(b[i+2:]))
		if n < 2 || i+2+n > len(b) {
			return nil
		}
		seg := b[i+4 : i+2+n]
		if m == 0xE1 && len(seg) > 6 && string(seg[:6]) == "Exif\x00\x00" {
			return seg[6:]
		}
		i += 2 + n
	}
	return nil
}

// pngExif returns the payload of the eXIf chunk, if one comes before IDAT.
func pngExif(b []byte) []byte {
	i := 8
	for i+8 <= len(b) {
		n := int(binary.BigEndian.Uint32(b[i:]))
		typ := string(b[i+4 : i+8])
		if n < 0 || n > len(b)-i-12 {
			return nil
		}
		switch typ {
		case "eXIf":
			return b[i+8 : i+8+n]
		case "IDAT", "IEND":
			return nil
		}
		i += 12 + n
	}
	return nil
}

// webpExif returns the payload of the EXIF chunk of an extended WebP.
func webpExif(b []byte) []byte {
	i := 12
	for i+8 <= len(b) {
		n := int(binary.LittleEndian.Uint32(b[i+4:]))
		if n < 0 || n > len(b)-i-8 {
			return nil
		}
		if string(b[i:i+4]) == "EXIF" {
			p := b[i+8 : i+8+n]
			if len(p) > 6 && string(p[:6]) == "Exif\x00\x00" {
				p = p[6:]
			}
			return p
		}
		i += 8 + n + n&1
	}
	return nil
}
