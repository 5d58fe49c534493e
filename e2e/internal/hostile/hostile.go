// Package hostile generates the hostile-input corpus: every case is built
// from code (plus three tiny committed seeds Go cannot encode: a CMYK JPEG and
// lossy/lossless WebP), with the outcome a correct service must give.
package hostile

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/color/palette"
	"image/gif"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// Case is one input and what must come of it.
type Case struct {
	Name string
	Data []byte
	// Codes is the set of acceptable error codes; empty means it must succeed.
	Codes []string
	// Bomb marks inputs whose header declares a huge size.
	Bomb bool
	// Orientation, when > 0, is the EXIF orientation whose result is checked.
	Orientation int
}

// Quadrant colours of the orientation test image, stored orientation:
// top-left red, top-right green, bottom-left blue, bottom-right white.
var (
	Red   = color.RGBA{255, 0, 0, 255}
	Green = color.RGBA{0, 255, 0, 255}
	Blue  = color.RGBA{0, 0, 255, 255}
	White = color.RGBA{255, 255, 255, 255}
)

// Displayed gives, per EXIF orientation, the colours seen at TL, TR, BL, BR
// once the orientation is applied.
var Displayed = map[int][4]color.RGBA{
	1: {Red, Green, Blue, White},
	2: {Green, Red, White, Blue},
	3: {White, Blue, Green, Red},
	4: {Blue, White, Red, Green},
	5: {Red, Blue, Green, White},
	6: {Blue, Red, White, Green},
	7: {White, Green, Blue, Red},
	8: {Green, White, Red, Blue},
}

func quadrants(n int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, n, n))
	for y := range n {
		for x := range n {
			c := Red
			switch {
			case x >= n/2 && y < n/2:
				c = Green
			case x < n/2 && y >= n/2:
				c = Blue
			case x >= n/2 && y >= n/2:
				c = White
			}
			img.SetRGBA(x, y, c)
		}
	}
	return img
}

func photo(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetRGBA(x, y, color.RGBA{uint8(x * 255 / w), uint8(y * 255 / h), uint8((x + y) % 256), 255})
		}
	}
	return img
}

func encJPEG(img image.Image, q int) []byte {
	var b bytes.Buffer
	_ = jpeg.Encode(&b, img, &jpeg.Options{Quality: q})
	return b.Bytes()
}

func encPNG(img image.Image) []byte {
	var b bytes.Buffer
	_ = png.Encode(&b, img)
	return b.Bytes()
}

// WithOrientation inserts an EXIF APP1 segment with the orientation tag
// right after the JPEG's SOI marker.
func WithOrientation(j []byte, o int) []byte {
	tiff := []byte{'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, byte(o), 0, 0, 0, 0, 0, 0, 0}
	payload := append([]byte("Exif\x00\x00"), tiff...)
	seg := []byte{0xFF, 0xE1, byte((len(payload) + 2) >> 8), byte(len(payload) + 2)}
	seg = append(seg, payload...)
	out := append([]byte{}, j[:2]...)
	out = append(out, seg...)
	return append(out, j[2:]...)
}

func pngChunk(typ string, data []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	b = append(b, typ...)
	b = append(b, data...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(append([]byte(typ), data...)))
}

// PNGBomb is a well-formed PNG header declaring w x h RGBA pixels.
func PNGBomb(w, h uint32) []byte {
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 6, 0, 0, 0)
	b := []byte("\x89PNG\r\n\x1a\n")
	b = append(b, pngChunk("IHDR", ihdr)...)
	// A zlib stream of zeros: tiny on disk, enormous when inflated.
	var z bytes.Buffer
	z.Write([]byte{0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01})
	b = append(b, pngChunk("IDAT", z.Bytes())...)
	return append(b, pngChunk("IEND", nil)...)
}

// JPEGBomb is a small JPEG whose frame header is patched to declare w x h.
func JPEGBomb(w, h uint16) []byte {
	j := encJPEG(photo(16, 16), 80)
	for i := 2; i+9 < len(j); i++ {
		if j[i] == 0xFF && (j[i+1] == 0xC0 || j[i+1] == 0xC2) {
			binary.BigEndian.PutUint16(j[i+5:], h)
			binary.BigEndian.PutUint16(j[i+7:], w)
			break
		}
	}
	return j
}

func animatedGIF() []byte {
	g := &gif.GIF{}
	for f := range 3 {
		p := image.NewPaletted(image.Rect(0, 0, 48, 48), palette.Plan9)
		for y := range 48 {
			for x := range 48 {
				p.SetColorIndex(x, y, uint8((x+y+f*40)%256))
			}
		}
		g.Image = append(g.Image, p)
		g.Delay = append(g.Delay, 10)
	}
	var b bytes.Buffer
	_ = gif.EncodeAll(&b, g)
	return b.Bytes()
}

func palettedAlpha() []byte {
	pal := color.Palette{color.NRGBA{255, 0, 0, 255}, color.NRGBA{0, 0, 255, 128}, color.NRGBA{0, 0, 0, 0}}
	p := image.NewPaletted(image.Rect(0, 0, 40, 30), pal)
	for y := range 30 {
		for x := range 40 {
			p.SetColorIndex(x, y, uint8((x/10+y/10)%3))
		}
	}
	return encPNG(p)
}

func png16() []byte {
	img := image.NewNRGBA64(image.Rect(0, 0, 40, 30))
	for y := range 30 {
		for x := range 40 {
			img.SetNRGBA64(x, y, color.NRGBA64{uint16(x * 1600), uint16(y * 2100), 30000, 65535})
		}
	}
	return encPNG(img)
}

func polyglot() []byte {
	j := encJPEG(photo(64, 48), 85)
	var z bytes.Buffer
	zw := zip.NewWriter(&z)
	w, _ := zw.Create("payload.txt")
	_, _ = w.Write([]byte("not what it seems"))
	_ = zw.Close()
	return append(j, z.Bytes()...)
}

// Corpus returns every case. seedDir holds cmyk.jpg, lossy.webp and
// lossless.webp; bad is the shared catalog's bad/ folder.
func Corpus(seedDir, bad string) ([]Case, error) {
	read := func(p string) ([]byte, error) { return os.ReadFile(p) }
	cmyk, err := read(filepath.Join(seedDir, "cmyk.jpg"))
	if err != nil {
		return nil, err
	}
	lossy, err := read(filepath.Join(seedDir, "lossy.webp"))
	if err != nil {
		return nil, err
	}
	lossless, err := read(filepath.Join(seedDir, "lossless.webp"))
	if err != nil {
		return nil, err
	}
	truncShared, err := read(filepath.Join(bad, "truncated.jpg"))
	if err != nil {
		return nil, err
	}
	tinyGIF, err := read(filepath.Join(bad, "no_time_for_that_tiny.gif"))
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(rng.UintN(256))
	}
	goodJPEG := encJPEG(photo(320, 240), 90)
	goodPNG := encPNG(photo(120, 90))
	corrupt := []string{"corrupt_image"}
	cases := []Case{
		{Name: "truncated jpeg", Data: goodJPEG[:len(goodJPEG)/2], Codes: corrupt},
		{Name: "truncated jpeg (shared)", Data: truncShared, Codes: corrupt},
		{Name: "truncated png", Data: goodPNG[:len(goodPNG)*6/10], Codes: corrupt},
		{Name: "zero bytes", Data: nil, Codes: []string{"empty_body", "missing_image", "bad_request", "invalid_argument"}},
		{Name: "random bytes", Data: random, Codes: []string{"unsupported_format"}},
		{Name: "html saved as jpg", Data: []byte("<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>"), Codes: []string{"unsupported_format"}},
		{Name: "png declaring 50000x50000", Data: PNGBomb(50000, 50000), Codes: []string{"dimensions_too_large"}, Bomb: true},
		{Name: "jpeg declaring 65500x65500", Data: JPEGBomb(65500, 65500), Codes: []string{"dimensions_too_large"}, Bomb: true},
		{Name: "cmyk jpeg", Data: cmyk},
		{Name: "16-bit png", Data: png16()},
		{Name: "palette png with alpha", Data: palettedAlpha()},
		{Name: "animated gif", Data: animatedGIF()},
		{Name: "animated gif (shared)", Data: tinyGIF},
		{Name: "lossy webp", Data: lossy},
		{Name: "lossless webp", Data: lossless},
		{Name: "jpeg/zip polyglot", Data: polyglot()},
	}
	q := encJPEG(quadrants(64), 95)
	for o := 1; o <= 8; o++ {
		cases = append(cases, Case{Name: "exif orientation " + string(rune('0'+o)), Data: WithOrientation(q, o), Orientation: o})
	}
	return cases, nil
}
