// Package fakes implements the preprocess and embed contracts in process,
// small and deterministic, for the indexer's tests: real HTTP on loopback
// through the real contract clients, with knobs for latency and failures.
// Search's double is the contract's own (searchv1test), which counts every
// write so duplicates would show.
package fakes

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	_ "image/gif"  // decoders for the fake preprocess
	_ "image/jpeg" // decoders for the fake preprocess
	_ "image/png"  // decoders for the fake preprocess
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"
)

// Side is the fake models' input side (tiny tensors keep tests fast).
const Side = 8

// Spec is the preprocess spec the fake embed publishes for every model.
func Spec() preprocessv1.Spec {
	return preprocessv1.Spec{Width: Side, Height: Side, ResizeMode: preprocessv1.ResizeSquash, Interpolation: "nearest",
		Scale: 1.0 / 255, Mean: [3]float32{0, 0, 0}, Std: [3]float32{1, 1, 1}, ChannelOrder: "RGB", Layout: "NCHW", DType: "float32"}
}

// Preprocess is a fake preprocess service.
type Preprocess struct {
	Server *httptest.Server
	Calls  atomic.Int64
	Images atomic.Int64
	// FailNext makes the next n batch calls answer 503.
	FailNext atomic.Int64
	// FailItems makes the next n images answer a per-item 503.
	FailItems atomic.Int64
	// FloatOnly refuses dtype uint8 as a preprocess from before it did.
	FloatOnly atomic.Bool
	mu        sync.Mutex
	asked     map[string]int64 // batch calls by the dtype asked for
}

// Asked is how many batch calls asked for dtype d.
func (p *Preprocess) Asked(d string) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.asked[d]
}

// NewPreprocess starts a fake preprocess.
func NewPreprocess() *Preprocess {
	p := &Preprocess{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+preprocessv1.RoutePreprocessBatch, p.batch)
	p.Server = httptest.NewServer(mux)
	return p
}

// URL is the base URL.
func (p *Preprocess) URL() string { return p.Server.URL }

// Close stops the server.
func (p *Preprocess) Close() { p.Server.Close() }

func (p *Preprocess) batch(w http.ResponseWriter, r *http.Request) {
	p.Calls.Add(1)
	if p.FailNext.Load() > 0 && p.FailNext.Add(-1) >= 0 {
		apierror.Write(w, apierror.New(503, apierror.CodeUnavailable, "fake outage"))
		return
	}
	spec, err := preprocessv1.DecodeSpec(r.Header.Get(preprocessv1.HeaderSpec))
	asFloat := spec
	asFloat.DType = "float32"
	if err != nil || asFloat != Spec() || (spec.DType != "float32" && spec.DType != "uint8") {
		apierror.Write(w, apierror.BadRequest("bad_spec", "fake preprocess wants the fake spec, float32 or uint8: %v", err))
		return
	}
	p.mu.Lock()
	if p.asked == nil {
		p.asked = map[string]int64{}
	}
	p.asked[spec.DType]++
	p.mu.Unlock()
	if spec.DType == "uint8" && p.FloatOnly.Load() {
		// The words of the real service before uint8 came.
		apierror.Write(w, apierror.BadRequest(apierror.CodeInvalidArgument, "invalid preprocess spec: dtype %q is not float32 or float16", spec.DType))
		return
	}
	if err := r.ParseMultipartForm(64 << 20); err != nil {
		apierror.Write(w, apierror.BadRequest(apierror.CodeBadRequest, "multipart: %v", err))
		return
	}
	files := r.MultipartForm.File["image"]
	meta := preprocessv1.BatchMeta{Spec: spec}
	var levels []byte
	rows := 0
	for i, fh := range files {
		f, err := fh.Open()
		if err != nil {
			apierror.Write(w, apierror.BadRequest(apierror.CodeBadRequest, "part: %v", err))
			return
		}
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(f)
		f.Close()
		p.Images.Add(1)
		if p.FailItems.Load() > 0 && p.FailItems.Add(-1) >= 0 {
			meta.Items = append(meta.Items, preprocessv1.ItemStatus{Index: i, Row: -1, Error: &preprocessv1.ItemError{Status: 503, Code: "overloaded", Message: "fake overload"}})
			continue
		}
		img, format, err := image.Decode(bytes.NewReader(buf.Bytes()))
		if err != nil {
			meta.Items = append(meta.Items, preprocessv1.ItemStatus{Index: i, Row: -1, Error: &preprocessv1.ItemError{Status: 422, Code: "corrupt_image", Message: err.Error()}})
			continue
		}
		px, hash := sample(img)
		levels = append(levels, px...)
		b := img.Bounds()
		meta.Items = append(meta.Items, preprocessv1.ItemStatus{Index: i, Row: rows, Facts: &preprocessv1.Facts{Format: format, Width: b.Dx(), Height: b.Dy(), Orientation: 1, PHash: hash, Bytes: buf.Len()}})
		rows++
	}
	var t *tensorv1.Tensor
	if rows > 0 {
		t = &tensorv1.Tensor{DType: tensorv1.Uint8, Shape: spec.Shape(rows), Data: levels}
		if spec.DType == "float32" {
			t = &tensorv1.Tensor{DType: tensorv1.Float32, Shape: spec.Shape(rows), Data: make([]byte, 4*len(levels))}
			_ = spec.Widen(t.Data, levels) // sized above
		}
	}
	out, err := preprocessv1.MarshalBatch(meta, t)
	if err != nil {
		apierror.Write(w, apierror.New(500, apierror.CodeInternal, "%v", err))
		return
	}
	w.Header().Set("Content-Type", preprocessv1.BatchMediaType)
	_, _ = w.Write(out)
}

// sample squashes img to Side x Side (nearest) as NCHW 8-bit levels (the
// spec's floats are level/255) and computes an average hash of the gray
// version.
func sample(img image.Image) ([]byte, string) {
	b := img.Bounds()
	out := make([]byte, 3*Side*Side)
	gray := make([]float32, Side*Side)
	var mean float32
	for y := range Side {
		for x := range Side {
			sx := b.Min.X + (2*x+1)*b.Dx()/(2*Side)
			sy := b.Min.Y + (2*y+1)*b.Dy()/(2*Side)
			r, g, bl, _ := img.At(sx, sy).RGBA()
			i := y*Side + x
			out[i], out[Side*Side+i], out[2*Side*Side+i] = byte(r>>8), byte(g>>8), byte(bl>>8)
			gray[i] = (float32(r>>8) + float32(g>>8) + float32(bl>>8)) / 3 / 255
			mean += gray[i]
		}
	}
	mean /= Side * Side
	var h uint64
	for i, v := range gray {
		if v > mean {
			h |= 1 << i
		}
	}
	return out, fmt.Sprintf("%016x", h)
}

// Embed is a fake embed service. Its vector is a fixed projection of the
// input row, L2-normalised; different models use different projections.
type Embed struct {
	Server *httptest.Server
	Dim    int
	// Models served; the first is the default.
	Models []string
	// latency is added to every embed call (to model a capacity).
	latency atomic.Int64
	Calls   atomic.Int64
	Rows    atomic.Int64
	mu      sync.Mutex
	// BatchSizes records the row count of every call.
	BatchSizes []int
	// DTypes counts the calls by tensor dtype.
	DTypes map[string]int
}

// NewEmbed starts a fake embed serving models with dimension dim.
func NewEmbed(dim int, models ...string) *Embed {
	e := &Embed{Dim: dim, Models: models}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+embedv1.RouteModels+"/{id}", e.model)
	mux.HandleFunc("POST "+embedv1.RouteEmbed, e.embed)
	e.Server = httptest.NewServer(mux)
	return e
}

// SetLatency sets the time every embed call takes.
func (e *Embed) SetLatency(d time.Duration) { e.latency.Store(int64(d)) }

// URL is the base URL.
func (e *Embed) URL() string { return e.Server.URL }

// Close stops the server.
func (e *Embed) Close() { e.Server.Close() }

func (e *Embed) spec(id string) (embedv1.ModelSpec, bool) {
	for i, m := range e.Models {
		if m == id {
			return embedv1.ModelSpec{ID: m, Version: "1", Dim: e.Dim, Normalization: "l2", Preprocess: Spec(), Default: i == 0, Ready: true,
				WireDTypes: []string{"uint8"}}, true
		}
	}
	return embedv1.ModelSpec{}, false
}

func (e *Embed) model(w http.ResponseWriter, r *http.Request) {
	m, ok := e.spec(r.PathValue("id"))
	if !ok {
		apierror.Write(w, apierror.New(404, "unknown_model", "no model %q", r.PathValue("id")))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(m)
}

func (e *Embed) embed(w http.ResponseWriter, r *http.Request) {
	e.Calls.Add(1)
	id := r.URL.Query().Get(embedv1.ParamModel)
	if id == "" {
		id = e.Models[0]
	}
	m, ok := e.spec(id)
	if !ok {
		apierror.Write(w, apierror.New(404, "unknown_model", "no model %q", id))
		return
	}
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(r.Body)
	t, err := tensorv1.Unmarshal(buf.Bytes())
	if err != nil {
		apierror.Write(w, apierror.BadRequest("bad_tensor", "%v", err))
		return
	}
	want := Spec().Shape(t.Shape[0])
	if fmt.Sprint(t.Shape) != fmt.Sprint(want) {
		apierror.Write(w, apierror.BadRequest("bad_shape", "shape %v, want %v", t.Shape, want))
		return
	}
	if d := time.Duration(e.latency.Load()); d > 0 {
		time.Sleep(d)
	}
	e.mu.Lock()
	if e.DTypes == nil {
		e.DTypes = map[string]int{}
	}
	e.DTypes[t.DType.String()]++
	e.mu.Unlock()
	if t.DType == tensorv1.Uint8 { // as the real embed: widened through the model's spec
		wide := make([]byte, 4*len(t.Data))
		if err := Spec().Widen(wide, t.Data); err != nil {
			apierror.Write(w, apierror.BadRequest("bad_tensor", "%v", err))
			return
		}
		t = tensorv1.Tensor{DType: tensorv1.Float32, Shape: t.Shape, Data: wide}
	}
	fs, err := t.Float32s(nil)
	if err != nil {
		apierror.Write(w, apierror.BadRequest("bad_tensor", "%v", err))
		return
	}
	n := t.Shape[0]
	e.Rows.Add(int64(n))
	e.mu.Lock()
	e.BatchSizes = append(e.BatchSizes, n)
	e.mu.Unlock()
	per := len(fs) / n
	seed := 1
	for i, m := range e.Models {
		if m == id {
			seed = i + 1
		}
	}
	rows := make([][]float32, n)
	for i := range n {
		rows[i] = Project(fs[i*per:(i+1)*per], m.Dim, seed)
	}
	w.Header().Set(embedv1.HeaderModelID, m.ID)
	w.Header().Set(embedv1.HeaderModelVersion, m.Version)
	w.Header().Set(embedv1.HeaderDim, strconv.Itoa(m.Dim))
	w.Header().Set(embedv1.HeaderCount, strconv.Itoa(n))
	w.Header().Set("Content-Type", embedv1.EmbeddingsMediaType)
	_, _ = w.Write(embedv1.MarshalVectors(rows))
}

// Project maps an input row to a dim-long unit vector.
func Project(in []float32, dim, seed int) []float32 {
	out := make([]float32, dim)
	for i, v := range in {
		k := (i*seed*7 + i/dim) % dim
		out[k] += (v - 0.5) * float32(1+(i*seed)%3)
	}
	var s float64
	for _, v := range out {
		s += float64(v) * float64(v)
	}
	if s == 0 {
		out[0] = 1
		return out
	}
	inv := float32(1 / math.Sqrt(s))
	for i := range out {
		out[i] *= inv
	}
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
