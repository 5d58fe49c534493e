// Package embedv1test is an in-memory embed service for other services'
// tests. It serves the embedv1 routes with the real service's statuses and
// codes: it takes float32 tensors and, for models that list it, uint8
// levels widened through the model's spec, and checks the shape against the
// spec. Its vectors are a fixed projection of the input (the same image
// always gives the same vector, similar images similar ones), one
// projection per model, so two models are two vector spaces.
package embedv1test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1"
	"github.com/lookalike-dev/lookalike/shared/contract/internal/double"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"
)

// Model is a model spec as the double serves it: dim, the preprocessing
// spec it publishes, uint8 on the wire, ready, on the CPU.
func Model(id string, dim int, spec preprocessv1.Spec) embedv1.ModelSpec {
	return embedv1.ModelSpec{ID: id, Version: "1", Dim: dim, Normalization: "l2", Preprocess: spec,
		Provider: "cpu", Ready: true, WireDTypes: []string{"uint8"}}
}

// Server is the in-memory embed service. Call New.
type Server struct {
	double.Base
	models []embedv1.ModelSpec

	latency atomic.Int64
	calls   atomic.Int64
	rows    atomic.Int64

	mu         sync.Mutex
	batchSizes []int
	dtypes     map[string]int
}

// New serves models; the first is the default.
func New(models ...embedv1.ModelSpec) *Server {
	ms := slices.Clone(models)
	for i := range ms {
		ms[i].Default = i == 0
	}
	return &Server{models: ms, dtypes: map[string]int{}}
}

// SetLatency sets the time every embed call takes (a model of capacity).
func (s *Server) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

// Calls counts the embed requests served.
func (s *Server) Calls() int64 { return s.calls.Load() }

// Rows counts the images embedded.
func (s *Server) Rows() int64 { return s.rows.Load() }

// BatchSizes is the row count of every embed request, in order.
func (s *Server) BatchSizes() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.batchSizes)
}

// DTypes is how many embed requests sent a tensor of dtype d.
func (s *Server) DTypes(d string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dtypes[d]
}

func (s *Server) model(id string) (embedv1.ModelSpec, int, error) {
	if id == "" && len(s.models) > 0 {
		return s.models[0], 1, nil
	}
	for i, m := range s.models {
		if m.ID == id {
			return m, i + 1, nil
		}
	}
	return embedv1.ModelSpec{}, 0, apierror.New(http.StatusNotFound, apierror.CodeNotFound, "no model %q is loaded", id)
}

// Serve starts s on a loopback httptest server; Close stops it.
func (s *Server) Serve() *Server {
	s.Start(s.Handler())
	return s
}

// Handler serves the embedv1 routes and /readyz.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", s.Readyz)
	mux.HandleFunc("GET "+embedv1.RouteModels, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, embedv1.ModelList{Models: s.models})
	})
	mux.HandleFunc("GET "+strings.Replace(embedv1.RouteModel, ":id", "{id}", 1), func(w http.ResponseWriter, r *http.Request) {
		m, _, err := s.model(r.PathValue("id"))
		if err != nil {
			apierror.Write(w, err.(*apierror.Error))
			return
		}
		writeJSON(w, m)
	})
	mux.HandleFunc("POST "+embedv1.RouteEmbed, func(w http.ResponseWriter, r *http.Request) {
		if err := s.embed(w, r); err != nil {
			apierror.Write(w, err)
		}
	})
	return mux
}

func (s *Server) embed(w http.ResponseWriter, r *http.Request) *apierror.Error {
	s.calls.Add(1)
	m, seed, err := s.model(r.URL.Query().Get(embedv1.ParamModel))
	if err != nil {
		return err.(*apierror.Error)
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && ct != tensorv1.MediaType {
		return apierror.New(http.StatusUnsupportedMediaType, apierror.CodeUnsupportedMedia, "body must be %s, got %q", tensorv1.MediaType, ct)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r.Body); err != nil || buf.Len() == 0 {
		return apierror.BadRequest(apierror.CodeInvalidArgument, "empty body: send a %s tensor", tensorv1.MediaType)
	}
	t, terr := tensorv1.Unmarshal(buf.Bytes())
	if terr != nil {
		return apierror.BadRequest(apierror.CodeInvalidArgument, "%v", terr)
	}
	if t.DType != tensorv1.Float32 && !(t.DType == tensorv1.Uint8 && slices.Contains(m.WireDTypes, "uint8")) {
		return apierror.BadRequest(apierror.CodeInvalidArgument, "tensor is %s, the model takes float32", t.DType)
	}
	if len(t.Shape) != 4 || t.Shape[0] < 1 || fmt.Sprint(t.Shape[1:]) != fmt.Sprint(m.Preprocess.Shape(1)[1:]) {
		return apierror.BadRequest(apierror.CodeInvalidArgument, "tensor shape %v does not match the model input %v", t.Shape, m.Preprocess.Shape(1))
	}
	if d := time.Duration(s.latency.Load()); d > 0 {
		time.Sleep(d)
	}
	n := t.Shape[0]
	s.mu.Lock()
	s.dtypes[t.DType.String()]++
	s.batchSizes = append(s.batchSizes, n)
	s.mu.Unlock()
	s.rows.Add(int64(n))
	if t.DType == tensorv1.Uint8 {
		wide := make([]byte, 4*len(t.Data))
		if err := m.Preprocess.Widen(wide, t.Data); err != nil {
			return apierror.BadRequest(apierror.CodeInvalidArgument, "%v", err)
		}
		t = tensorv1.Tensor{DType: tensorv1.Float32, Shape: t.Shape, Data: wide}
	}
	fs, ferr := t.Float32s(nil)
	if ferr != nil {
		return apierror.BadRequest(apierror.CodeInvalidArgument, "%v", ferr)
	}
	per := len(fs) / n
	rows := make([][]float32, n)
	for i := range n {
		rows[i] = Vector(fs[i*per:(i+1)*per], m.Dim, seed)
	}
	w.Header().Set(embedv1.HeaderModelID, m.ID)
	w.Header().Set(embedv1.HeaderModelVersion, m.Version)
	w.Header().Set(embedv1.HeaderDim, strconv.Itoa(m.Dim))
	w.Header().Set(embedv1.HeaderCount, strconv.Itoa(n))
	w.Header().Set("Content-Type", embedv1.EmbeddingsMediaType)
	_, _ = w.Write(embedv1.MarshalVectors(rows))
	return nil
}

// Vector maps an input row to a dim-long unit vector: the row, less 0.5,
// folded onto dim axes by a fixed permutation and weights that depend on
// seed (one seed per model). A row that folds to zero maps to the first axis.
func Vector(in []float32, dim, seed int) []float32 {
	out := make([]float32, dim)
	for i, v := range in {
		k := (i*seed*7 + i/dim) % dim
		out[k] += (v - 0.5) * float32(1+(i*seed)%3)
	}
	var ss float64
	for _, v := range out {
		ss += float64(v) * float64(v)
	}
	if ss == 0 {
		out[0] = 1
		return out
	}
	inv := float32(1 / math.Sqrt(ss))
	for i := range out {
		out[i] *= inv
	}
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
