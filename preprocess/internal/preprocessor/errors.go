package preprocessor

import (
	"context"
	"errors"
	"net/http"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"

	"github.com/lookalike-dev/lookalike/preprocess/internal/imagedecode"
)

// apiError maps a decode or pipeline error to the envelope error a client
// gets. Anything unexpected stays a 500 (a bug), with its cause logged.
func apiError(err error) *apierror.Error {
	if e, ok := apierror.As(err); ok {
		return e
	}
	switch {
	case errors.Is(err, imagedecode.ErrEmpty):
		return apierror.Wrap(err, preprocessv1.StatusOf(preprocessv1.CodeEmptyBody), preprocessv1.CodeEmptyBody, "the request has no image bytes")
	case errors.Is(err, imagedecode.ErrTooLarge):
		return apierror.Wrap(err, preprocessv1.StatusOf(preprocessv1.CodeImageTooLarge), preprocessv1.CodeImageTooLarge, "%s", errText(err))
	case errors.Is(err, imagedecode.ErrDimensions):
		return apierror.Wrap(err, preprocessv1.StatusOf(preprocessv1.CodeDimensionsTooLarge), preprocessv1.CodeDimensionsTooLarge, "%s", errText(err))
	case errors.Is(err, imagedecode.ErrTooComplex):
		return apierror.Wrap(err, preprocessv1.StatusOf(preprocessv1.CodeImageTooComplex), preprocessv1.CodeImageTooComplex, "%s", errText(err))
	case errors.Is(err, imagedecode.ErrTooManyScans):
		return apierror.Wrap(err, preprocessv1.StatusOf(preprocessv1.CodeTooManyScans), preprocessv1.CodeTooManyScans, "%s", errText(err))
	case errors.Is(err, imagedecode.ErrUnsupported):
		return apierror.Wrap(err, preprocessv1.StatusOf(preprocessv1.CodeUnsupportedFormat), preprocessv1.CodeUnsupportedFormat, "%s", errText(err))
	case errors.Is(err, imagedecode.ErrCorrupt):
		return apierror.Wrap(err, preprocessv1.StatusOf(preprocessv1.CodeCorruptImage), preprocessv1.CodeCorruptImage, "%s", errText(err))
	case errors.Is(err, context.DeadlineExceeded):
		return apierror.Wrap(err, http.StatusServiceUnavailable, apierror.CodeDeadlineExceeded, "preprocessing did not finish within the request deadline").WithRetryAfter(1)
	case errors.Is(err, context.Canceled):
		return apierror.Wrap(err, http.StatusServiceUnavailable, apierror.CodeUnavailable, "the request was cancelled")
	}
	return apierror.Wrap(err, http.StatusInternalServerError, apierror.CodeInternal, "preprocessing failed")
}

func errText(err error) string {
	s := err.Error()
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}
