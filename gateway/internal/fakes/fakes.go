// Package fakes holds in-process stand-ins for preprocess and embed that
// implement their v1 contracts, for the gateway's tests (search's is the
// contract's own, searchv1test). They are small but real: preprocess decodes
// the image and resamples it to the spec it is sent, and embed turns the
// tensor into a mean-centred L2-normalised vector (the same image always
// gives the same vector, similar images similar ones).
package fakes

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/gif" // decoders for the fake preprocess
	_ "image/jpeg"
	_ "image/png"
	"io"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"
)

// ModelID is the fake embed's only model.
const ModelID = "fake-v1"

// Spec is the preprocessing the fake model publishes (deliberately not
// ImageNet's, so a test can see the gateway passes the model's spec on).
func Spec() preprocessv1.Spec {
	return preprocessv1.Spec{Width: 16, Height: 16, ResizeMode: preprocessv1.ResizeSquash, Interpolation: "nearest",
		Scale: 1.0 / 255, Mean: [3]float32{0.5, 0.5, 0.5}, Std: [3]float32{0.5, 0.5, 0.5},
		ChannelOrder: "RGB", Layout: "NCHW", DType: "float32"}
}

// Ready is a switchable /readyz.
type Ready struct{ notReady atomic.Bool }

// Set makes /readyz answer 200 (true) or 503 (false).
func (r *Ready) Set(ok bool) { r.notReady.Store(!ok) }

func (r *Ready) handle(w http.ResponseWriter, _ *http.Request) {
	if r.notReady.Load() {
		apierror.Write(w, apierror.New(503, apierror.CodeNotReady, "not ready"))
		return
	}
	w.WriteHeader(200)
}

// Preprocess is a fake preprocess service. Its refusals use the real
// service's statuses and codes: 415 unsupported_format, 422 corrupt_image.
type Preprocess struct {
	Ready
	Calls atomic.Int32
	// FloatOnly refuses dtype uint8 as a preprocess from before it did.
	FloatOnly atomic.Bool
	mu        sync.Mutex
	specs     []string
	skips     []string
}

// Skips returns the skip headers received (HeaderSkip), one per call.
func (p *Preprocess) Skips() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.skips...)
}

// Specs returns the spec headers received.
func (p *Preprocess) Specs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.specs...)
}

// Handler serves the preprocess v1 routes.
func (p *Preprocess) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", p.handle)
	mux.HandleFunc("POST "+preprocessv1.RoutePreprocess, func(w http.ResponseWriter, r *http.Request) {
		p.Calls.Add(1)
		p.mu.Lock()
		p.specs = append(p.specs, r.Header.Get(preprocessv1.HeaderSpec))
		p.skips = append(p.skips, r.Header.Get(preprocessv1.HeaderSkip))
		p.mu.Unlock()
		spec := preprocessv1.ImageNet()
		if h := r.Header.Get(preprocessv1.HeaderSpec); h != "" {
			var err error
			if spec, err = preprocessv1.DecodeSpec(h); err != nil {
				apierror.Write(w, apierror.BadRequest(apierror.CodeInvalidArgument, "%v", err))
				return
			}
		}
		if spec.DType == "uint8" && p.FloatOnly.Load() {
			// The words of the real service before uint8 came.
			apierror.Write(w, apierror.BadRequest(apierror.CodeInvalidArgument, "invalid preprocess spec: dtype %q is not float32 or float16", spec.DType))
			return
		}
		body, _ := io.ReadAll(io.LimitReader(r.Body, 32<<20))
		if len(body) == 0 {
			apierror.Write(w, apierror.BadRequest("empty_image", "the body is empty"))
			return
		}
		img, format, err := image.Decode(bytes.NewReader(body))
		if err != nil {
			if errors.Is(err, image.ErrFormat) {
				apierror.Write(w, apierror.New(415, "unsupported_format", "not a supported image"))
				return
			}
			apierror.Write(w, apierror.New(http.StatusUnprocessableEntity, "corrupt_image", "the image is corrupt or truncated"))
			return
		}
		t := toTensor(img, spec)
		b, err := tensorv1.Marshal(t)
		if err != nil {
			apierror.Write(w, apierror.New(500, apierror.CodeInternal, "%v", err))
			return
		}
		facts, _ := json.Marshal(preprocessv1.Facts{Format: format, Width: img.Bounds().Dx(), Height: img.Bounds().Dy(), Orientation: 1, Bytes: len(body)})
		w.Header().Set(preprocessv1.HeaderFacts, string(facts))
		w.Header().Set("Content-Type", tensorv1.MediaType)
		w.Write(b)
	})
	return mux
}

// toTensor squashes img to the spec size (nearest), NCHW: its 8-bit levels
// (dtype uint8) or their normalised values (float32).
func toTensor(img image.Image, s preprocessv1.Spec) tensorv1.Tensor {
	b := img.Bounds()
	hw := s.Width * s.Height
	levels := make([]byte, 3*hw)
	for y := range s.Height {
		for x := range s.Width {
			sx := b.Min.X + x*b.Dx()/s.Width
			sy := b.Min.Y + y*b.Dy()/s.Height
			r, g, bl, _ := img.At(sx, sy).RGBA()
			for c, v := range [3]uint32{r >> 8, g >> 8, bl >> 8} {
				levels[c*hw+y*s.Width+x] = byte(v)
			}
		}
	}
	if s.DType == "uint8" {
		return tensorv1.Tensor{DType: tensorv1.Uint8, Shape: s.Shape(1), Data: levels}
	}
	t := tensorv1.Tensor{DType: tensorv1.Float32, Shape: s.Shape(1), Data: make([]byte, 4*len(levels))}
	_ = s.Widen(t.Data, levels) // sized above
	return t
}

// Embed is a fake embed service. Like the real one it takes float32
// tensors and uint8 levels, which it widens with the model's spec.
type Embed struct {
	Ready
	Calls atomic.Int32
	// DTypes counts the tensor dtypes received.
	DTypes Counter
}

// Counter counts strings.
type Counter struct {
	mu sync.Mutex
	n  map[string]int
}

// Add counts s once more.
func (c *Counter) Add(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[s]++
}

// Get is how often s was counted.
func (c *Counter) Get(s string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[s]
}

// Model is the fake model's spec.
func Model() embedv1.ModelSpec {
	return embedv1.ModelSpec{ID: ModelID, Version: "1", Dim: 3 * 16 * 16, Normalization: "l2",
		Preprocess: Spec(), Default: true, Provider: "cpu", Ready: true, WireDTypes: []string{"uint8"}}
}

// Handler serves the embed v1 routes.
func (e *Embed) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", e.handle)
	mux.HandleFunc("GET "+embedv1.RouteModels, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, embedv1.ModelList{Models: []embedv1.ModelSpec{Model()}})
	})
	mux.HandleFunc("POST "+embedv1.RouteEmbed, func(w http.ResponseWriter, r *http.Request) {
		e.Calls.Add(1)
		if m := r.URL.Query().Get(embedv1.ParamModel); m != "" && m != ModelID {
			apierror.Write(w, apierror.New(404, "unknown_model", "model %q is not loaded", m))
			return
		}
		body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<20))
		t, err := tensorv1.Unmarshal(body)
		if err != nil {
			apierror.Write(w, apierror.BadRequest("bad_tensor", "%v", err))
			return
		}
		want := Spec().Shape(t.Shape[0])
		if fmt.Sprint(t.Shape[1:]) != fmt.Sprint(want[1:]) || (t.DType != tensorv1.Float32 && t.DType != tensorv1.Uint8) {
			apierror.Write(w, apierror.BadRequest("shape_mismatch", "tensor %s %v, want float32 or uint8 %v", t.DType, t.Shape, want))
			return
		}
		e.DTypes.Add(t.DType.String())
		if t.DType == tensorv1.Uint8 {
			wide := make([]byte, 4*len(t.Data))
			if err := Spec().Widen(wide, t.Data); err != nil {
				apierror.Write(w, apierror.BadRequest("bad_tensor", "%v", err))
				return
			}
			t = tensorv1.Tensor{DType: tensorv1.Float32, Shape: t.Shape, Data: wide}
		}
		flat, err := t.Float32s(nil)
		if err != nil {
			apierror.Write(w, apierror.BadRequest("bad_tensor", "%v", err))
			return
		}
		dim := Model().Dim
		rows := make([][]float32, t.Shape[0])
		for i := range rows {
			rows[i] = vectorOf(flat[i*dim : (i+1)*dim])
		}
		w.Header().Set(embedv1.HeaderModelID, ModelID)
		w.Header().Set(embedv1.HeaderModelVersion, "1")
		w.Header().Set(embedv1.HeaderDim, strconv.Itoa(dim))
		w.Header().Set(embedv1.HeaderCount, strconv.Itoa(len(rows)))
		w.Header().Set("Content-Type", embedv1.EmbeddingsMediaType)
		w.Write(embedv1.MarshalVectors(rows))
	})
	return mux
}

// vectorOf mean-centres and L2-normalises x.
func vectorOf(x []float32) []float32 {
	var mean float64
	for _, v := range x {
		mean += float64(v)
	}
	mean /= float64(len(x))
	out := make([]float32, len(x))
	var n float64
	for i, v := range x {
		d := float64(v) - mean
		out[i] = float32(d)
		n += d * d
	}
	if n = math.Sqrt(n); n > 0 {
		for i := range out {
			out[i] = float32(float64(out[i]) / n)
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
