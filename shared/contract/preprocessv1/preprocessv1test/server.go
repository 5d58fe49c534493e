// Package preprocessv1test is an in-memory preprocess service for other
// services' tests. It serves the single and batch routes with the real
// service's statuses and codes (CodeEmptyBody, CodeUnsupportedFormat,
// CodeCorruptImage, per-item errors in a batch), decodes with the standard
// library, and samples the image to the spec's size by nearest neighbour,
// whatever the spec's resize mode: the real service owns the geometry, the
// double only what its callers see. Facts carry an average hash of the
// sampled image, so equal images have equal hashes.
package preprocessv1test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/gif" // the formats the double decodes
	_ "image/jpeg"
	_ "image/png"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/internal/double"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"
)

// MaxBody is the most image bytes one request may carry.
const MaxBody = 64 << 20

// Server is the in-memory preprocess service. The zero value serves; use
// Serve or Handler.
type Server struct {
	double.Base

	floatOnly atomic.Bool
	failNext  atomic.Int64
	failItems atomic.Int64
	calls     atomic.Int64
	images    atomic.Int64

	mu    sync.Mutex
	specs []string
	skips []string
	asked map[string]int64
}

// New returns a preprocess service.
func New() *Server { return &Server{} }

// SetFloatOnly makes a spec asking for uint8 a 400, in the words of a
// preprocess from before uint8 tensors.
func (s *Server) SetFloatOnly(on bool) { s.floatOnly.Store(on) }

// FailNext makes the next n requests answer 503 unavailable.
func (s *Server) FailNext(n int64) { s.failNext.Store(n) }

// FailItems makes the next n images of batches fail alone with 503 overloaded.
func (s *Server) FailItems(n int64) { s.failItems.Store(n) }

// Calls counts the requests served (single and batch).
func (s *Server) Calls() int64 { return s.calls.Load() }

// Images counts the images received.
func (s *Server) Images() int64 { return s.images.Load() }

// Specs is the spec header of every request, in order.
func (s *Server) Specs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.specs)
}

// Skips is the skip header of every single-image request, in order.
func (s *Server) Skips() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.skips)
}

// Asked is how many requests asked for dtype d.
func (s *Server) Asked(d string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.asked[d]
}

// Serve starts s on a loopback httptest server; Close stops it.
func (s *Server) Serve() *Server {
	s.Start(s.Handler())
	return s
}

// Handler serves the preprocessv1 routes and /readyz.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", s.Readyz)
	mux.HandleFunc("POST "+preprocessv1.RoutePreprocess, func(w http.ResponseWriter, r *http.Request) {
		if err := s.single(w, r); err != nil {
			apierror.Write(w, err)
		}
	})
	mux.HandleFunc("POST "+preprocessv1.RoutePreprocessBatch, func(w http.ResponseWriter, r *http.Request) {
		if err := s.batch(w, r); err != nil {
			apierror.Write(w, err)
		}
	})
	return mux
}

// start counts a request and reads its spec.
func (s *Server) start(r *http.Request) (preprocessv1.Spec, *apierror.Error) {
	s.calls.Add(1)
	h := r.Header.Get(preprocessv1.HeaderSpec)
	s.mu.Lock()
	s.specs = append(s.specs, h)
	s.mu.Unlock()
	if s.failNext.Load() > 0 && s.failNext.Add(-1) >= 0 {
		return preprocessv1.Spec{}, apierror.New(http.StatusServiceUnavailable, apierror.CodeUnavailable, "preprocess is unavailable").WithRetryAfter(1)
	}
	spec := preprocessv1.ImageNet()
	if h != "" {
		var err error
		if spec, err = preprocessv1.DecodeSpec(h); err != nil {
			return spec, apierror.BadRequest(apierror.CodeInvalidArgument, "invalid preprocess spec: %v", err)
		}
	}
	s.mu.Lock()
	if s.asked == nil {
		s.asked = map[string]int64{}
	}
	s.asked[spec.DType]++
	s.mu.Unlock()
	if spec.DType == "uint8" && s.floatOnly.Load() {
		return spec, apierror.BadRequest(apierror.CodeInvalidArgument, "invalid preprocess spec: dtype %q is not float32 or float16", spec.DType)
	}
	return spec, nil
}

func (s *Server) single(w http.ResponseWriter, r *http.Request) *apierror.Error {
	spec, e := s.start(r)
	if e != nil {
		return e
	}
	s.mu.Lock()
	s.skips = append(s.skips, r.Header.Get(preprocessv1.HeaderSkip))
	s.mu.Unlock()
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		return apierror.BadRequest(apierror.CodeBadRequest, "reading the body: %v", err)
	}
	s.images.Add(1)
	levels, facts, e := decode(body, spec)
	if e != nil {
		return e
	}
	t, err := tensor(spec, 1, levels)
	if err != nil {
		return apierror.New(http.StatusInternalServerError, apierror.CodeInternal, "%v", err)
	}
	b, err := tensorv1.Marshal(t)
	if err != nil {
		return apierror.New(http.StatusInternalServerError, apierror.CodeInternal, "%v", err)
	}
	fj, _ := json.Marshal(facts)
	w.Header().Set(preprocessv1.HeaderFacts, string(fj))
	w.Header().Set("Content-Type", tensorv1.MediaType)
	_, _ = w.Write(b)
	return nil
}

func (s *Server) batch(w http.ResponseWriter, r *http.Request) *apierror.Error {
	spec, e := s.start(r)
	if e != nil {
		return e
	}
	if err := r.ParseMultipartForm(MaxBody); err != nil {
		return apierror.BadRequest(apierror.CodeBadRequest, "multipart: %v", err)
	}
	meta := preprocessv1.BatchMeta{Spec: spec}
	var levels []byte
	rows := 0
	for i, fh := range r.MultipartForm.File["image"] {
		f, err := fh.Open()
		if err != nil {
			return apierror.BadRequest(apierror.CodeBadRequest, "part %d: %v", i, err)
		}
		body, err := io.ReadAll(io.LimitReader(f, MaxBody+1))
		f.Close()
		if err != nil {
			return apierror.BadRequest(apierror.CodeBadRequest, "part %d: %v", i, err)
		}
		s.images.Add(1)
		if s.failItems.Load() > 0 && s.failItems.Add(-1) >= 0 {
			meta.Items = append(meta.Items, preprocessv1.ItemStatus{Index: i, Row: -1,
				Error: &preprocessv1.ItemError{Status: http.StatusServiceUnavailable, Code: apierror.CodeOverloaded, Message: "preprocess is overloaded"}})
			continue
		}
		px, facts, e := decode(body, spec)
		if e != nil {
			meta.Items = append(meta.Items, preprocessv1.ItemStatus{Index: i, Row: -1, Error: &preprocessv1.ItemError{Status: e.Status, Code: e.Code, Message: e.Message}})
			continue
		}
		levels = append(levels, px...)
		meta.Items = append(meta.Items, preprocessv1.ItemStatus{Index: i, Row: rows, Facts: &facts})
		rows++
	}
	var t *tensorv1.Tensor
	if rows > 0 {
		tt, err := tensor(spec, rows, levels)
		if err != nil {
			return apierror.New(http.StatusInternalServerError, apierror.CodeInternal, "%v", err)
		}
		t = &tt
	}
	out, err := preprocessv1.MarshalBatch(meta, t)
	if err != nil {
		return apierror.New(http.StatusInternalServerError, apierror.CodeInternal, "%v", err)
	}
	w.Header().Set("Content-Type", preprocessv1.BatchMediaType)
	_, _ = w.Write(out)
	return nil
}

// decode samples one image to the spec's size as 8-bit levels in the spec's
// channel order and layout.
func decode(body []byte, spec preprocessv1.Spec) ([]byte, preprocessv1.Facts, *apierror.Error) {
	switch {
	case len(body) == 0:
		return nil, preprocessv1.Facts{}, apierror.BadRequest(preprocessv1.CodeEmptyBody, "the body holds no image")
	case len(body) > MaxBody:
		return nil, preprocessv1.Facts{}, apierror.New(http.StatusRequestEntityTooLarge, preprocessv1.CodeImageTooLarge, "over %d bytes", MaxBody)
	}
	img, format, err := image.Decode(bytes.NewReader(body))
	if errors.Is(err, image.ErrFormat) {
		return nil, preprocessv1.Facts{}, apierror.New(http.StatusUnsupportedMediaType, preprocessv1.CodeUnsupportedFormat, "not a JPEG, PNG, GIF or WebP image")
	}
	if err != nil {
		return nil, preprocessv1.Facts{}, apierror.New(http.StatusUnprocessableEntity, preprocessv1.CodeCorruptImage, "the image is corrupt or truncated")
	}
	levels, hash := sample(img, spec)
	b := img.Bounds()
	return levels, preprocessv1.Facts{Format: format, Width: b.Dx(), Height: b.Dy(), Orientation: 1, PHash: hash, Bytes: len(body)}, nil
}

func sample(img image.Image, spec preprocessv1.Spec) ([]byte, string) {
	b := img.Bounds()
	w, h := spec.Width, spec.Height
	out := make([]byte, 3*w*h)
	gray := make([]float64, w*h)
	var mean float64
	for y := range h {
		for x := range w {
			sx := b.Min.X + (2*x+1)*b.Dx()/(2*w)
			sy := b.Min.Y + (2*y+1)*b.Dy()/(2*h)
			r, g, bl, _ := img.At(sx, sy).RGBA()
			px := [3]byte{byte(r >> 8), byte(g >> 8), byte(bl >> 8)}
			if spec.ChannelOrder == "BGR" {
				px[0], px[2] = px[2], px[0]
			}
			i := y*w + x
			for c, v := range px {
				if spec.Layout == "NHWC" {
					out[3*i+c] = v
				} else {
					out[c*w*h+i] = v
				}
			}
			gray[i] = (float64(px[0]) + float64(px[1]) + float64(px[2])) / 3
			mean += gray[i]
		}
	}
	mean /= float64(w * h)
	var hash uint64
	for i, v := range gray {
		if v > mean {
			hash |= 1 << (i % 64)
		}
	}
	return out, fmt.Sprintf("%016x", hash)
}

// tensor is n images' levels as the spec's dtype: the levels themselves for
// uint8, widened through the spec otherwise.
func tensor(spec preprocessv1.Spec, n int, levels []byte) (tensorv1.Tensor, error) {
	if spec.DType == "uint8" {
		return tensorv1.Tensor{DType: tensorv1.Uint8, Shape: spec.Shape(n), Data: levels}, nil
	}
	t := tensorv1.Tensor{DType: tensorv1.Float32, Shape: spec.Shape(n), Data: make([]byte, 4*len(levels))}
	if spec.DType == "float16" {
		return t, fmt.Errorf("the double serves float32 and uint8, not %s", spec.DType)
	}
	return t, spec.Widen(t.Data, levels)
}
