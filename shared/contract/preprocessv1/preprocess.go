// Package preprocessv1 is the wire contract of the preprocess service,
// version 1: the preprocessing spec a model publishes, the routes, the image
// facts, the batch response and a client. Standard library only.
package preprocessv1

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// Routes.
const (
	// RoutePreprocess takes the raw image bytes as the body and answers one
	// tensor [1,...] (tensorv1 media type), or a JSON debug view when the
	// request has Accept: application/json.
	RoutePreprocess = "/v1/preprocess"
	// RoutePreprocessBatch takes multipart/form-data with one or more "image"
	// parts and answers BatchMediaType.
	RoutePreprocessBatch = "/v1/preprocess/batch"
)

// Headers.
const (
	// HeaderSpec carries the Spec as compact JSON. When absent, the service
	// applies its configured default spec.
	HeaderSpec = "Lookalike-Preprocess-Spec"
	// HeaderFacts carries the Facts of a single-image response as JSON.
	HeaderFacts = "Lookalike-Image-Facts"
	// HeaderSkip (optional, on single-image requests) names work the caller
	// does not need: "phash" skips the perceptual hash (Facts.PHash comes
	// back empty; 3% of the CPU of an image). Unknown values are ignored,
	// and so is the header by services older than it.
	HeaderSkip = "Lookalike-Preprocess-Skip"
	// SkipPHash is the HeaderSkip value that skips the perceptual hash.
	SkipPHash = "phash"
)

// BatchMediaType is the batch response: a 4-byte little-endian length, that
// many bytes of BatchMeta JSON, then one tensorv1 tensor [K,...] holding the
// rows of the K images that succeeded, in request order.
const BatchMediaType = "application/vnd.lookalike.preprocess-batch.v1"

// Resize modes.
const (
	ResizeShorterCrop = "shorter_crop" // shorter side to ResizeShorter, centre crop Width x Height
	ResizeLetterbox   = "letterbox"    // fit inside, pad with Background
	ResizeSquash      = "squash"       // stretch to Width x Height
)

// Spec is how a model wants its input prepared. The embed service publishes
// one per model; preprocess applies the spec it is given.
type Spec struct {
	Width  int `json:"width"`
	Height int `json:"height"`
	// ResizeMode is one of shorter_crop, letterbox, squash.
	ResizeMode string `json:"resize_mode"`
	// ResizeShorter is the shorter side before the centre crop (shorter_crop).
	ResizeShorter int `json:"resize_shorter,omitempty"`
	// Interpolation: "bilinear", "lanczos3", "catmullrom", "box", "nearest".
	Interpolation string `json:"interpolation"`
	// Scale multiplies 8-bit values first (1/255 maps to [0,1]).
	Scale float32    `json:"scale"`
	Mean  [3]float32 `json:"mean"`
	Std   [3]float32 `json:"std"`
	// ChannelOrder is "RGB" or "BGR".
	ChannelOrder string `json:"channel_order"`
	// Layout is "NCHW" or "NHWC".
	Layout string `json:"layout"`
	// DType is "float32", "float16" or "uint8". A uint8 tensor holds the
	// 8-bit levels after resize, channel order and layout, without scale,
	// mean and std: its consumer applies them (Widen), which gives exactly the
	// float32 tensor at a quarter of the bytes on the wire.
	DType string `json:"dtype"`
	// Background is the "#rrggbb" colour alpha is composited on (white if empty).
	Background string `json:"background,omitempty"`
}

// ImageNet returns the usual ImageNet spec: shorter side 256, centre crop
// 224, bilinear, [0,1] then mean/std, RGB, NCHW, float32.
func ImageNet() Spec {
	return Spec{
		Width: 224, Height: 224, ResizeMode: ResizeShorterCrop, ResizeShorter: 256,
		Interpolation: "bilinear", Scale: 1.0 / 255,
		Mean:         [3]float32{0.485, 0.456, 0.406},
		Std:          [3]float32{0.229, 0.224, 0.225},
		ChannelOrder: "RGB", Layout: "NCHW", DType: "float32",
	}
}

// Validate checks the spec.
func (s Spec) Validate() error {
	var errs []string
	if s.Width < 1 || s.Width > 4096 || s.Height < 1 || s.Height > 4096 {
		errs = append(errs, fmt.Sprintf("size %dx%d not in 1..4096", s.Width, s.Height))
	}
	switch s.ResizeMode {
	case ResizeShorterCrop:
		if s.ResizeShorter < min(s.Width, s.Height) || s.ResizeShorter > 8192 {
			errs = append(errs, fmt.Sprintf("resize_shorter %d must be >= the crop size and <= 8192", s.ResizeShorter))
		}
	case ResizeLetterbox, ResizeSquash:
	default:
		errs = append(errs, fmt.Sprintf("unknown resize_mode %q", s.ResizeMode))
	}
	switch s.Interpolation {
	case "bilinear", "lanczos3", "catmullrom", "box", "nearest":
	default:
		errs = append(errs, fmt.Sprintf("unknown interpolation %q", s.Interpolation))
	}
	if s.Scale == 0 {
		errs = append(errs, "scale must not be 0")
	}
	for i, v := range s.Std {
		if v == 0 {
			errs = append(errs, fmt.Sprintf("std[%d] must not be 0", i))
		}
	}
	if s.ChannelOrder != "RGB" && s.ChannelOrder != "BGR" {
		errs = append(errs, fmt.Sprintf("channel_order %q is not RGB or BGR", s.ChannelOrder))
	}
	if s.Layout != "NCHW" && s.Layout != "NHWC" {
		errs = append(errs, fmt.Sprintf("layout %q is not NCHW or NHWC", s.Layout))
	}
	switch s.DType {
	case "float32", "float16", "uint8":
	default:
		errs = append(errs, fmt.Sprintf("dtype %q is not float32, float16 or uint8", s.DType))
	}
	if s.Background != "" {
		var r, g, b uint8
		if n, err := fmt.Sscanf(s.Background, "#%02x%02x%02x", &r, &g, &b); err != nil || n != 3 || len(s.Background) != 7 {
			errs = append(errs, fmt.Sprintf("background %q is not #rrggbb", s.Background))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid preprocess spec: %s", strings.Join(errs, "; "))
	}
	return nil
}

// Shape is the tensor shape for a batch of n.
func (s Spec) Shape(n int) []int {
	if s.Layout == "NHWC" {
		return []int{n, s.Height, s.Width, 3}
	}
	return []int{n, 3, s.Height, s.Width}
}

// Levels is the model input value of each 8-bit level, per source channel
// R, G, B: v*Scale/Std[c] - Mean[c]/Std[c]. Preprocess makes its float
// tensors through this table and a consumer of a uint8 tensor widens with
// it, so both give the same bits.
func (s Spec) Levels() *[3][256]float32 {
	var t [3][256]float32
	for c := range 3 {
		mul, add := s.Scale/s.Std[c], -s.Mean[c]/s.Std[c]
		for v := range 256 {
			t[c][v] = float32(v)*mul + add
		}
	}
	return &t
}

// Widen turns uint8 items made with this spec (dtype uint8) into the float32
// values, little-endian, that dtype float32 would have given: dst holds
// 4*len(src) bytes, src whole items of Width*Height*3 levels.
func (s Spec) Widen(dst, src []byte) error {
	item := s.Width * s.Height * 3
	if item == 0 || len(src)%item != 0 || len(dst) != 4*len(src) {
		return fmt.Errorf("widening %d levels into %d bytes: not whole %dx%dx3 items", len(src), len(dst), s.Width, s.Height)
	}
	lut := s.Levels()
	// Output channel k holds source channel k, or 2-k in BGR order.
	src2ch := [3]int{0, 1, 2}
	if s.ChannelOrder == "BGR" {
		src2ch = [3]int{2, 1, 0}
	}
	put := func(i int, t *[256]float32, v byte) {
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(t[v]))
	}
	if s.Layout == "NHWC" {
		r, g, b := &lut[src2ch[0]], &lut[src2ch[1]], &lut[src2ch[2]]
		for i := 0; i+2 < len(src); i += 3 {
			put(i, r, src[i])
			put(i+1, g, src[i+1])
			put(i+2, b, src[i+2])
		}
		return nil
	}
	plane := s.Width * s.Height
	for i := 0; i < len(src); i += plane {
		t := &lut[src2ch[(i/plane)%3]]
		for j, v := range src[i : i+plane] {
			put(i+j, t, v)
		}
	}
	return nil
}

// Encode returns the compact JSON for HeaderSpec.
func (s Spec) Encode() string {
	b, _ := json.Marshal(s)
	return string(b)
}

// DecodeSpec parses and validates a HeaderSpec value.
func DecodeSpec(v string) (Spec, error) {
	var s Spec
	dec := json.NewDecoder(strings.NewReader(v))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Spec{}, fmt.Errorf("decoding preprocess spec: %w", err)
	}
	return s, s.Validate()
}

// Facts describe the decoded source image.
type Facts struct {
	Format string `json:"format"` // jpeg, png, gif, webp
	Width  int    `json:"width"`  // as stored, before orientation
	Height int    `json:"height"`
	// Orientation is the EXIF orientation 1..8 that was applied (1 if none).
	Orientation int `json:"orientation"`
	// PHash is a 64-bit perceptual hash, hex encoded (16 digits).
	PHash string `json:"phash"`
	Bytes int    `json:"bytes"`
}

// DebugResponse is the Accept: application/json view of one image.
type DebugResponse struct {
	Facts Facts     `json:"facts"`
	Spec  Spec      `json:"spec"`
	DType string    `json:"dtype"`
	Shape []int     `json:"shape"`
	Data  []float32 `json:"data"`
}

// ItemStatus is one image's outcome in a batch.
type ItemStatus struct {
	// Index is the image's position among the request's "image" parts.
	Index int `json:"index"`
	// Row is the image's row in the batch tensor, -1 when it failed.
	Row   int    `json:"row"`
	Facts *Facts `json:"facts,omitempty"`
	// Error is set when the image failed; the rest of the batch stands.
	Error *ItemError `json:"error,omitempty"`
}

// ItemError is a per-image failure, with the code a single request would get.
type ItemError struct {
	Status  int    `json:"status"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// BatchMeta is the JSON part of a batch response.
type BatchMeta struct {
	Spec  Spec         `json:"spec"`
	Items []ItemStatus `json:"items"`
}
