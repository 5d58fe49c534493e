// Package testcat writes catalogs with generated images for the indexer's
// tests and benchmarks: good products, duplicate SKUs, identical images,
// and every kind of bad line and bad image, with the outcome each one must
// get; and the tiny models the tests' embed double serves.
package testcat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/lookalike-dev/lookalike/shared/contract/embedv1"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1/embedv1test"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
)

// Side is the test models' input side (tiny tensors keep tests fast).
const Side = 8

// Spec is the preprocessing every test model publishes.
func Spec() preprocessv1.Spec {
	return preprocessv1.Spec{Width: Side, Height: Side, ResizeMode: preprocessv1.ResizeSquash, Interpolation: "nearest",
		Scale: 1.0 / 255, Mean: [3]float32{0, 0, 0}, Std: [3]float32{1, 1, 1}, ChannelOrder: "RGB", Layout: "NCHW", DType: "float32"}
}

// Models are test models of dimension dim; the first is the default.
func Models(dim int, ids ...string) []embedv1.ModelSpec {
	out := make([]embedv1.ModelSpec, len(ids))
	for i, id := range ids {
		out[i] = embedv1test.Model(id, dim, Spec())
	}
	return out
}

// Want is the expected outcome of a catalog.
type Want struct {
	// Indexed maps each SKU that must end up in search to the title of the
	// line that wins.
	Indexed map[string]string
	// Failed maps each catalog line that must be reported failed to its code.
	Failed map[int]string
	// Superseded lists lines whose SKU appears again later.
	Superseded []int
	// Items is distinct SKUs plus lines too broken to name one.
	Items int
	Lines int
}

// Image returns a PNG of size w x h drawn from seed: blocks of colour, so
// that different seeds give clearly different images.
func Image(seed uint64, w, h int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	const blocks = 4
	cols := make([]color.RGBA, blocks*blocks)
	for i := range cols {
		cols[i] = color.RGBA{uint8(r.IntN(256)), uint8(r.IntN(256)), uint8(r.IntN(256)), 255}
	}
	for y := range h {
		for x := range w {
			img.SetRGBA(x, y, cols[(y*blocks/h)*blocks+x*blocks/w])
		}
	}
	var b bytes.Buffer
	_ = png.Encode(&b, img)
	return b.Bytes()
}

// Options shape a generated catalog.
type Options struct {
	Good int // products with good, distinct images
	// Bad adds the bad cases (bad lines, missing and corrupt images,
	// a path escaping the folder, duplicate SKUs, an identical image).
	Bad bool
}

// Write creates dir/catalog.jsonl and dir/img/*.png and returns what the
// index must hold afterwards.
func Write(dir string, o Options) (string, Want, error) {
	if err := os.MkdirAll(filepath.Join(dir, "img"), 0o755); err != nil {
		return "", Want{}, err
	}
	want := Want{Indexed: map[string]string{}, Failed: map[int]string{}}
	var lines [][]byte
	add := func(v any) int {
		var b []byte
		switch x := v.(type) {
		case string:
			b = []byte(x)
		default:
			b, _ = json.Marshal(v)
		}
		lines = append(lines, b)
		return len(lines)
	}
	prod := func(sku, img, title string) map[string]any {
		return map[string]any{"sku": sku, "image": img, "title": title, "category": "test", "price": 1.5, "in_stock": true, "colour": "red"}
	}
	for i := range o.Good {
		name := fmt.Sprintf("img/p%05d.png", i)
		if err := os.WriteFile(filepath.Join(dir, name), Image(uint64(i)+1, 24+i%16, 20+i%9), 0o644); err != nil {
			return "", Want{}, err
		}
		sku := fmt.Sprintf("SKU-%05d", i)
		title := fmt.Sprintf("product %d", i)
		if o.Bad && i == 3 {
			// SKU-00003 first appears with an old title; a later line wins.
			want.Superseded = append(want.Superseded, add(prod(sku, name, "old title")))
			continue
		}
		add(prod(sku, name, title))
		want.Indexed[sku] = title
	}
	if o.Bad {
		_ = os.WriteFile(filepath.Join(dir, "img", "truncated.png"), Image(999, 40, 40)[:60], 0o644)
		_ = os.WriteFile(filepath.Join(dir, "img", "text.png"), []byte("<html>not an image</html>"), 0o644)
		_ = os.WriteFile(filepath.Join(dir, "img", "empty.png"), nil, 0o644)
		want.Failed[add(`{"sku": "BROKEN", "image": `)] = "bad_json"
		want.Failed[add(`{"image": "img/p00000.png"}`)] = "missing_sku"
		want.Failed[add(`{"sku":"BAD-PRICE","image":"img/p00001.png","price":"free"}`)] = "bad_price"
		want.Failed[add(prod("MISSING-IMG", "img/nope.png", "x"))] = "image_not_found"
		want.Failed[add(prod("TRUNCATED", "img/truncated.png", "x"))] = "corrupt_image"
		want.Failed[add(prod("NOT-IMAGE", "img/text.png", "x"))] = "unsupported_format"
		want.Failed[add(prod("EMPTY", "img/empty.png", "x"))] = "empty_body"
		want.Failed[add(prod("ESCAPE", "../outside.png", "x"))] = "image_path_not_allowed"
		// A later line of SKU-00003 wins.
		add(prod("SKU-00003", "img/p00003.png", "new title"))
		want.Indexed["SKU-00003"] = "new title"
		// The same image as SKU-00000 under another SKU: indexed, reported.
		add(prod("SAME-IMAGE", "img/p00000.png", "twin"))
		want.Indexed["SAME-IMAGE"] = "twin"
		// A SKU whose earlier line was bad and whose last line is good.
		_ = os.WriteFile(filepath.Join(dir, "img", "fixed.png"), Image(1<<40, 33, 27), 0o644)
		want.Superseded = append(want.Superseded, add(`{"sku":"FIXED","image":"img/fixed.png","price":"oops"}`))
		add(prod("FIXED", "img/fixed.png", "fixed"))
		want.Indexed["FIXED"] = "fixed"
	}
	// Failed lines are items of their own (their SKUs, if any, are unique).
	want.Items = len(want.Indexed) + len(want.Failed)
	want.Lines = len(lines)
	path := filepath.Join(dir, "catalog.jsonl")
	var buf bytes.Buffer
	for _, l := range lines {
		buf.Write(l)
		buf.WriteByte('\n')
	}
	return path, want, os.WriteFile(path, buf.Bytes(), 0o644)
}
