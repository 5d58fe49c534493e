// Package embedv1 is the wire contract of the embed service, version 1:
// model specs, the embed call and its binary embeddings format, and a client.
// Standard library only.
package embedv1

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
)

// Routes.
const (
	// RouteEmbed takes a tensorv1 body (the tensor preprocess produced) and
	// the query parameter "model" (empty: the default model). It answers
	// EmbeddingsMediaType, or EmbedResponse JSON with Accept: application/json.
	RouteEmbed = "/v1/embed"
	// RouteModels lists ModelSpec; RouteModel serves one ("/v1/models/{id}").
	RouteModels = "/v1/models"
	RouteModel  = "/v1/models/:id"
)

// Query parameter and headers.
const (
	ParamModel = "model"
	// Headers on every embed response.
	HeaderModelID      = "Lookalike-Model-Id"
	HeaderModelVersion = "Lookalike-Model-Version"
	HeaderDim          = "Lookalike-Embedding-Dim"
	HeaderCount        = "Lookalike-Embedding-Count"
	// HeaderTimeout (optional, on requests) is the caller's budget in
	// milliseconds: work not started within it is dropped and the request
	// answers 504 deadline_exceeded. The request's own cancellation always counts.
	HeaderTimeout = "Lookalike-Timeout-Ms"
)

// EmbeddingsMediaType is N*Dim little-endian float32 values, row-major; the
// headers above give the model, N and Dim.
const EmbeddingsMediaType = "application/vnd.lookalike.embeddings.v1"

// ModelSpec is what the embed service publishes for each loaded model.
type ModelSpec struct {
	// ID names the vector space: name plus version, e.g. "mobilenetv2-int8-v1".
	// Vectors of two IDs never meet in one index.
	ID      string `json:"id"`
	Version string `json:"version"`
	// Dim is the embedding dimension.
	Dim int `json:"dim"`
	// Normalization is "l2" or "l2+center".
	Normalization string `json:"normalization"`
	// Preprocess is the spec preprocess must apply for this model.
	Preprocess preprocessv1.Spec `json:"preprocess"`
	// Default is true for the model answering requests that name none.
	Default bool `json:"default"`
	// Provider is the execution provider the model runs on (cpu, cuda, tensorrt).
	Provider string `json:"provider,omitempty"`
	// Ready is true once the model has been warmed up.
	Ready bool `json:"ready"`
	// MaxBatch is the most images the model runs in one inference; callers
	// batching on their side send at most this many per request (optional).
	MaxBatch int `json:"max_batch,omitempty"`
	// WireDTypes lists the tensor dtypes embed also takes for this model
	// besides Preprocess.DType (optional). "uint8": the 8-bit levels
	// preprocess makes with Preprocess but dtype "uint8", which embed widens
	// itself (preprocessv1.Spec.Widen) into exactly the float32 input: a
	// quarter of the bytes on the wire. WireSpec picks it.
	WireDTypes []string `json:"wire_dtypes,omitempty"`
}

// WireSpec is the spec to ask preprocess for when sending its tensors to
// this model: Preprocess, with dtype uint8 when the model takes it.
func (m ModelSpec) WireSpec() preprocessv1.Spec {
	s := m.Preprocess
	if slices.Contains(m.WireDTypes, "uint8") {
		s.DType = "uint8"
	}
	return s
}

// ModelList is the RouteModels response.
type ModelList struct {
	Models []ModelSpec `json:"models"`
}

// EmbedResponse is the JSON view of an embed response.
type EmbedResponse struct {
	ModelID      string      `json:"model_id"`
	ModelVersion string      `json:"model_version"`
	Dim          int         `json:"dim"`
	Embeddings   [][]float32 `json:"embeddings"`
}

// Embeddings is a decoded binary embed response.
type Embeddings struct {
	ModelID      string
	ModelVersion string
	Dim          int
	// Vectors has one row per input image, each Dim long.
	Vectors [][]float32
}

// MarshalVectors encodes rows of equal length as little-endian float32.
func MarshalVectors(rows [][]float32) []byte {
	n := 0
	for _, r := range rows {
		n += len(r)
	}
	b := make([]byte, 0, 4*n)
	for _, r := range rows {
		for _, f := range r {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
		}
	}
	return b
}

// UnmarshalVectors decodes count rows of dim float32 values.
func UnmarshalVectors(b []byte, count, dim int) ([][]float32, error) {
	if count < 0 || dim < 1 || count > math.MaxInt32/4/dim || len(b) != 4*count*dim {
		return nil, fmt.Errorf("embeddings body of %d bytes does not hold %d x %d float32", len(b), count, dim)
	}
	flat := make([]float32, count*dim)
	for i := range flat {
		flat[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	rows := make([][]float32, count)
	for i := range rows {
		rows[i] = flat[i*dim : (i+1)*dim : (i+1)*dim]
	}
	return rows, nil
}
