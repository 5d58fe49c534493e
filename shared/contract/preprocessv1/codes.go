package preprocessv1

import (
	"net/http"
	"strings"

	"github.com/lookalike-dev/lookalike/shared/apierror"
)

// RefusesDType reports whether err is a preprocess service refusing the
// spec's dtype: a 400 about "dtype", as a service older than the dtype
// answers (uint8 came after float32 and float16). Callers that asked for
// a narrower wire dtype (embedv1.ModelSpec.WireSpec) then ask again for the
// model's own.
func RefusesDType(err error) bool {
	e, ok := apierror.As(err)
	return ok && e.Status == http.StatusBadRequest && strings.Contains(e.Message, "dtype")
}

// Error codes the preprocess service answers with (in the apierror
// envelope), besides the shared ones (invalid_argument for a bad spec,
// deadline_exceeded, ...).
const (
	CodeEmptyBody          = "empty_body"           // 400: no image bytes
	CodeUnsupportedFormat  = "unsupported_format"   // 415: not JPEG, PNG, GIF or WebP
	CodeCorruptImage       = "corrupt_image"        // 422: the format is known but the data is broken (e.g. truncated)
	CodeImageTooLarge      = "image_too_large"      // 413: more bytes than the service accepts
	CodeDimensionsTooLarge = "dimensions_too_large" // 422: the header declares more pixels than the service decodes
	CodeImageTooComplex    = "image_too_complex"    // 422: decoding would take more memory than one image may
	CodeTooManyScans       = "too_many_scans"       // 422: a progressive JPEG with more scans than the service decodes
)

// StatusOf is the HTTP status that goes with one of the codes above (400 for
// an unknown code).
func StatusOf(code string) int {
	switch code {
	case CodeUnsupportedFormat:
		return http.StatusUnsupportedMediaType
	case CodeCorruptImage, CodeDimensionsTooLarge, CodeImageTooComplex, CodeTooManyScans:
		return http.StatusUnprocessableEntity
	case CodeImageTooLarge:
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}
