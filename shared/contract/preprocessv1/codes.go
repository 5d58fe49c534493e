package preprocessv1

import "net/http"

// Error codes the preprocess service answers with (in the apierror
// envelope), besides the shared ones (invalid_argument for a bad spec,
// deadline_exceeded, ...).
const (
	CodeEmptyBody          = "empty_body"           // 400: no image bytes
	CodeUnsupportedFormat  = "unsupported_format"   // 415: not JPEG, PNG, GIF or WebP
	CodeCorruptImage       = "corrupt_image"        // 422: the format is known but the data is broken (e.g. truncated)
	CodeImageTooLarge      = "image_too_large"      // 413: more bytes than the service accepts
	CodeDimensionsTooLarge = "dimensions_too_large" // 422: the header declares more pixels than the service decodes
)

// StatusOf is the HTTP status that goes with one of the codes above (400 for
// an unknown code).
func StatusOf(code string) int {
	switch code {
	case CodeUnsupportedFormat:
		return http.StatusUnsupportedMediaType
	case CodeCorruptImage, CodeDimensionsTooLarge:
		return http.StatusUnprocessableEntity
	case CodeImageTooLarge:
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}
