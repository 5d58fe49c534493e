// Package imagecorpus generates the test corpus of the preprocess service:
// every supported format and variant, all eight EXIF orientations, and the
// hostile inputs (truncations, bombs, polyglots, non-images), each with the
// outcome a correct service must give. Only the few files the Go encoders
// cannot write are committed, as seeds (testdata/seeds). Tests, the fuzz
// seed corpus and the service tests all draw from here.
package imagecorpus

import (
	"archive/zip"
	"bytes"
	"embed"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/color/palette"
	"image/gif"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
)

//go:embed testdata/seeds/*.jpg testdata/seeds/*.webp
var seeds embed.FS

// Quadrant colours of the quad pattern, as displayed: top-left, top-right,
// bottom-left, bottom-right.
var Quad = [4]color.NRGBA{
	{220, 30, 30, 255},
	{30, 200, 40, 255},
	{30, 40, 210, 255},
	{240, 240, 240, 255},
}

// Case is one corpus input and what must come of it.
type Case struct {
	Name string
	Data []byte
	// WantCode is the error code the service must answer ("" = success).
	WantCode string
	// Format and Orientation are the expected facts on success.
	Format      string
	Orientation int
	// Width, Height: the expected stored size on success.
	Width, Height int
	// Pattern says how to check the pixels on success: "quad" (the quad
	// pattern as displayed), "quad-alpha" (its top-right quadrant is
	// transparent and must show the background), "gray" (R=G=B), or "".
	Pattern string
	// Bomb marks inputs whose header declares far more pixels than the
	// limits allow; they must be refused without allocating them.
	Bomb bool
}

// QuadImage draws the quad pattern at w x h; transparentTR makes the
// top-right quadrant fully transparent.
func QuadImage(w, h int, transparentTR bool) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			q := 0
			if x >= w/2 {
				q++
			}
			if y >= h/2 {
				q += 2
			}
			c := Quad[q]
			if transparentTR && q == 1 {
				c.A = 0
			}
			img.SetNRGBA(x, y, c)
		}
	}
	return img
}

// storedFor returns the stored image that, shown with EXIF orientation o,
// displays disp.
func storedFor(disp *image.NRGBA, o int) *image.NRGBA {
	W, H := disp.Bounds().Dx(), disp.Bounds().Dy()
	sw, sh := W, H
	if o >= 5 {
		sw, sh = H, W
	}
	s := image.NewNRGBA(image.Rect(0, 0, sw, sh))
	for Y := range H {
		for X := range W {
			var x, y int
			switch o {
			case 2:
				x, y = sw-1-X, Y
			case 3:
				x, y = sw-1-X, sh-1-Y
			case 4:
				x, y = X, sh-1-Y
			case 5:
				x, y = Y, X
			case 6:
				x, y = Y, sh-1-X
			case 7:
				x, y = sw-1-Y, sh-1-X
			case 8:
				x, y = sw-1-Y, X
			default:
				x, y = X, Y
			}
			s.SetNRGBA(x, y, disp.NRGBAAt(X, Y))
		}
	}
	return s
}

// ExifTIFF is a minimal big-endian TIFF block holding one Orientation tag.
func ExifTIFF(o int) []byte {
	b := []byte("MM\x00\x2a\x00\x00\x00\x08") // header, IFD0 at 8
	b = binary.BigEndian.AppendUint16(b, 1)   // one entry
	b = binary.BigEndian.AppendUint16(b, 0x0112)
	b = binary.BigEndian.AppendUint16(b, 3) // SHORT
	b = binary.BigEndian.AppendUint32(b, 1)
	b = binary.BigEndian.AppendUint16(b, uint16(o))
	b = append(b, 0, 0)
	return binary.BigEndian.AppendUint32(b, 0) // no next IFD
}

// WithJPEGApp1 inserts an APP1 segment with payload right after SOI.
func WithJPEGApp1(j, payload []byte) []byte {
	seg := []byte{0xFF, 0xE1}
	seg = binary.BigEndian.AppendUint16(seg, uint16(len(payload)+2))
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

// withPNGChunk inserts a chunk right after IHDR.
func withPNGChunk(p []byte, typ string, data []byte) []byte {
	const ihdrEnd = 8 + 8 + 13 + 4
	out := append([]byte{}, p[:ihdrEnd]...)
	out = append(out, pngChunk(typ, data)...)
	return append(out, p[ihdrEnd:]...)
}

func encJPEG(img image.Image, q int) []byte {
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: q}); err != nil {
		panic(fmt.Sprintf("imagecorpus: jpeg: %v", err))
	}
	return b.Bytes()
}

func encPNG(img image.Image) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		panic(fmt.Sprintf("imagecorpus: png: %v", err))
	}
	return b.Bytes()
}

func seed(name string) []byte {
	b, err := seeds.ReadFile("testdata/seeds/" + name)
	if err != nil {
		panic(fmt.Sprintf("imagecorpus: seed %s: %v", name, err))
	}
	return b
}

// Generate builds the corpus. It is deterministic.
func Generate() []Case {
	const w, h = 96, 64
	quad := QuadImage(w, h, false)
	quadA := QuadImage(w, h, true)
	var cs []Case
	ok := func(name, format string, data []byte, o, sw, sh int, pattern string) {
		cs = append(cs, Case{Name: name, Data: data, Format: format, Orientation: o, Width: sw, Height: sh, Pattern: pattern})
	}
	bad := func(name, code string, data []byte, bomb bool) {
		cs = append(cs, Case{Name: name, Data: data, WantCode: code, Bomb: bomb})
	}

	// JPEG.
	base := encJPEG(quad, 92)
	ok("jpeg-baseline", "jpeg", base, 1, w, h, "quad")
	for o := 1; o <= 8; o++ {
		s := storedFor(quad, o)
		j := WithJPEGApp1(encJPEG(s, 92), append([]byte("Exif\x00\x00"), ExifTIFF(o)...))
		ok(fmt.Sprintf("jpeg-exif-orientation-%d", o), "jpeg", j, o, s.Rect.Dx(), s.Rect.Dy(), "quad")
	}
	gray := image.NewGray(quad.Rect)
	for i := range gray.Pix {
		gray.Pix[i] = uint8(i % 251)
	}
	ok("jpeg-grayscale", "jpeg", encJPEG(gray, 90), 1, w, h, "gray")
	ok("jpeg-progressive", "jpeg", seed("progressive.jpg"), 1, 48, 32, "quad")
	ok("jpeg-cmyk", "jpeg", seed("cmyk.jpg"), 1, 48, 32, "quad")
	ok("jpeg-ycck", "jpeg", seed("ycck.jpg"), 1, 48, 32, "quad")
	ok("jpeg-broken-exif-ignored", "jpeg", WithJPEGApp1(base, []byte("Exif\x00\x00MM\x00\x2a\xff\xff\xff\xf0garbage")), 1, w, h, "quad")
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	f, _ := zw.Create("payload.txt")
	_, _ = f.Write([]byte("a JPEG that is also a ZIP archive"))
	_ = zw.Close()
	ok("jpeg-zip-polyglot", "jpeg", append(append([]byte{}, base...), zb.Bytes()...), 1, w, h, "quad")

	// PNG.
	ok("png-rgb8", "png", encPNG(quad), 1, w, h, "quad")
	ok("png-rgba8-alpha", "png", encPNG(quadA), 1, w, h, "quad-alpha")
	q16 := image.NewNRGBA64(quad.Rect)
	q16a := image.NewNRGBA64(quad.Rect)
	for y := range h {
		for x := range w {
			c := quad.NRGBAAt(x, y)
			q16.SetNRGBA64(x, y, color.NRGBA64{uint16(c.R) * 257, uint16(c.G) * 257, uint16(c.B) * 257, 0xffff})
			ca := quadA.NRGBAAt(x, y)
			q16a.SetNRGBA64(x, y, color.NRGBA64{uint16(ca.R) * 257, uint16(ca.G) * 257, uint16(ca.B) * 257, uint16(ca.A) * 257})
		}
	}
	ok("png-rgb16", "png", encPNG(q16), 1, w, h, "quad")
	ok("png-rgba16-alpha", "png", encPNG(q16a), 1, w, h, "quad-alpha")
	pal := color.Palette{Quad[0], Quad[1], Quad[2], Quad[3], color.NRGBA{0, 0, 0, 0}}
	pimg := image.NewPaletted(quad.Rect, pal)
	pimgA := image.NewPaletted(quad.Rect, pal)
	for y := range h {
		for x := range w {
			pimg.Set(x, y, quad.NRGBAAt(x, y))
			if c := quadA.NRGBAAt(x, y); c.A == 0 {
				pimgA.SetColorIndex(x, y, 4)
			} else {
				pimgA.Set(x, y, c)
			}
		}
	}
	ok("png-palette", "png", encPNG(pimg), 1, w, h, "quad")
	ok("png-palette-alpha", "png", encPNG(pimgA), 1, w, h, "quad-alpha")
	g16 := image.NewGray16(quad.Rect)
	for i := 0; i < len(g16.Pix); i += 2 {
		g16.Pix[i] = uint8(i % 253)
	}
	ok("png-gray8", "png", encPNG(gray), 1, w, h, "gray")
	ok("png-gray16", "png", encPNG(g16), 1, w, h, "gray")
	s6 := storedFor(quad, 6)
	ok("png-exif-orientation-6", "png", withPNGChunk(encPNG(s6), "eXIf", ExifTIFF(6)), 6, s6.Rect.Dx(), s6.Rect.Dy(), "quad")

	// GIF: the first frame counts.
	gpal := append(color.Palette{}, palette.Plan9...)
	first := image.NewPaletted(quad.Rect, gpal)
	second := image.NewPaletted(quad.Rect, gpal)
	for y := range h {
		for x := range w {
			first.Set(x, y, quad.NRGBAAt(x, y))
			second.Set(x, y, color.Black)
		}
	}
	var gb bytes.Buffer
	_ = gif.Encode(&gb, first, nil)
	ok("gif", "gif", append([]byte{}, gb.Bytes()...), 1, w, h, "quad")
	gb.Reset()
	_ = gif.EncodeAll(&gb, &gif.GIF{Image: []*image.Paletted{first, second}, Delay: []int{10, 10}})
	anim := append([]byte{}, gb.Bytes()...)
	ok("gif-animated-first-frame", "gif", anim, 1, w, h, "quad")
	small := image.NewPaletted(image.Rect(10, 5, 40, 25), gpal)
	gb.Reset()
	_ = gif.EncodeAll(&gb, &gif.GIF{Image: []*image.Paletted{small}, Delay: []int{0}, Config: image.Config{ColorModel: gpal, Width: w, Height: h}})
	ok("gif-first-frame-smaller-than-screen", "gif", append([]byte{}, gb.Bytes()...), 1, w, h, "")

	// WebP (decoder only in Go: committed seeds).
	ok("webp-lossy", "webp", seed("lossy.webp"), 1, 48, 32, "quad")
	ok("webp-lossless", "webp", seed("lossless.webp"), 1, 48, 32, "quad")
	ok("webp-lossless-alpha", "webp", seed("alpha.webp"), 1, 48, 32, "quad-alpha")

	// Hostile.
	bad("zero-bytes", "empty_body", nil, false)
	rnd := rand.New(rand.NewPCG(1, 2))
	junk := make([]byte, 4096)
	for i := range junk {
		junk[i] = byte(rnd.IntN(256))
	}
	bad("random-bytes", "unsupported_format", junk, false)
	bad("html-saved-as-jpg", "unsupported_format", []byte("<!doctype html><html><body><img src=x onerror=alert(1)></body></html>"), false)
	bad("text", "unsupported_format", []byte("hello"), false)
	bad("bmp", "unsupported_format", append([]byte("BM"), make([]byte, 64)...), false)
	bad("jpeg-truncated", "corrupt_image", base[:len(base)/2], false)
	bad("jpeg-soi-only", "corrupt_image", []byte{0xFF, 0xD8, 0xFF}, false)
	bad("jpeg-header-no-scan", "corrupt_image", jpegHeaderOnly(base), false)
	pq := encPNG(quad)
	bad("png-truncated", "corrupt_image", pq[:len(pq)/2], false)
	bad("png-signature-only", "corrupt_image", pq[:8], false)
	bcrc := append([]byte{}, pq...)
	bcrc[len(bcrc)-20] ^= 0xff // inside IDAT: checksum mismatch
	bad("png-bad-crc", "corrupt_image", bcrc, false)
	bad("gif-truncated", "corrupt_image", anim[:len(anim)/3], false)
	lw := seed("lossless.webp")
	bad("webp-truncated", "corrupt_image", lw[:len(lw)/2], false)
	bad("png-bomb-50000x50000", "dimensions_too_large", PNGBomb(50000, 50000), true)
	bad("jpeg-bomb-65500x65500", "dimensions_too_large", JPEGWithSize(base, 65500, 65500), true)
	bad("gif-bomb-65535x65535", "dimensions_too_large", GIFWithScreen(anim, 65535, 65535), true)
	bad("webp-bomb-16384x16384", "dimensions_too_large", WebPBomb(16384, 16384), true)
	return cs
}

// jpegHeaderOnly cuts a JPEG right after its frame header (SOF0).
func jpegHeaderOnly(j []byte) []byte {
	for i := 2; i+4 < len(j); {
		n := int(binary.BigEndian.Uint16(j[i+2:]))
		if j[i+1] == 0xC0 {
			return append(append([]byte{}, j[:i+2+n]...), 0xFF, 0xD9)
		}
		i += 2 + n
	}
	return j[:20]
}

// JPEGWithSize patches the frame header of j to declare w x h.
func JPEGWithSize(j []byte, w, h int) []byte {
	out := append([]byte{}, j...)
	for i := 2; i+9 < len(out); {
		n := int(binary.BigEndian.Uint16(out[i+2:]))
		if out[i+1] == 0xC0 || out[i+1] == 0xC2 {
			binary.BigEndian.PutUint16(out[i+5:], uint16(h))
			binary.BigEndian.PutUint16(out[i+7:], uint16(w))
			return out
		}
		i += 2 + n
	}
	return out
}

// PNGBomb is a valid PNG signature and IHDR declaring w x h RGBA, then a
// tiny IDAT and IEND.
func PNGBomb(w, h int) []byte {
	ihdr := binary.BigEndian.AppendUint32(nil, uint32(w))
	ihdr = binary.BigEndian.AppendUint32(ihdr, uint32(h))
	ihdr = append(ihdr, 8, 6, 0, 0, 0)
	b := []byte("\x89PNG\r\n\x1a\n")
	b = append(b, pngChunk("IHDR", ihdr)...)
	b = append(b, pngChunk("IDAT", []byte{0x78, 0x9c, 0x63, 0, 0, 0, 1, 0, 1})...)
	return append(b, pngChunk("IEND", nil)...)
}

// GIFWithScreen patches the logical screen size of g.
func GIFWithScreen(g []byte, w, h int) []byte {
	out := append([]byte{}, g...)
	binary.LittleEndian.PutUint16(out[6:], uint16(w))
	binary.LittleEndian.PutUint16(out[8:], uint16(h))
	return out
}

// WebPBomb is an extended WebP whose VP8X canvas is w x h.
func WebPBomb(w, h int) []byte {
	vp8x := []byte{0, 0, 0, 0}
	vp8x = append(vp8x, byte(w-1), byte((w-1)>>8), byte((w-1)>>16))
	vp8x = append(vp8x, byte(h-1), byte((h-1)>>8), byte((h-1)>>16))
	body := []byte("WEBPVP8X")
	body = binary.LittleEndian.AppendUint32(body, uint32(len(vp8x)))
	body = append(body, vp8x...)
	b := []byte("RIFF")
	b = binary.LittleEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...)
}
