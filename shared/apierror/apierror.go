// Package apierror is the error envelope every Lookalike service answers with:
//
//	{"error":{"code":"corrupt_image","message":"...","request_id":"..."}}
//
// It uses the standard library only, so wire-contract clients can decode it.
package apierror

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Stable machine codes. Services may add their own; these are shared.
const (
	CodeBadRequest         = "bad_request"
	CodeInvalidArgument    = "invalid_argument"
	CodeUnauthorized       = "unauthorized"
	CodeForbidden          = "forbidden"
	CodeNotFound           = "not_found"
	CodeConflict           = "conflict"
	CodeModelMismatch      = "model_mismatch"
	CodeDimensionMismatch  = "dimension_mismatch"
	CodePayloadTooLarge    = "payload_too_large"
	CodeUnsupportedMedia   = "unsupported_media_type"
	CodeRateLimited        = "rate_limited"
	CodeOverloaded         = "overloaded"
	CodeDeadlineExceeded   = "deadline_exceeded"
	CodeUnavailable        = "unavailable"
	CodeNotReady           = "not_ready"
	CodeInternal           = "internal"
	CodeMethodNotAllowed   = "method_not_allowed"
	CodeDownstreamProtocol = "downstream_protocol"
)

// Error is an API error with an HTTP status and a machine code.
type Error struct {
	Status    int    `json:"-"`
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id,omitempty"`
	// RetryAfter, in seconds, is sent as a Retry-After header when > 0.
	RetryAfter int   `json:"-"`
	cause      error `json:"-"`
}

// Envelope is the JSON body of every error response.
type Envelope struct {
	Error *Error `json:"error"`
}

func (e *Error) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("%s (%d %s): %v", e.Message, e.Status, e.Code, e.cause)
	}
	return fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code)
}

// Unwrap returns the internal cause, if any. The cause is logged, never sent.
func (e *Error) Unwrap() error { return e.cause }

// New builds an error with a status, code and human message.
func New(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap builds an error that keeps an internal cause for the logs.
func Wrap(cause error, status int, code, format string, args ...any) *Error {
	e := New(status, code, format, args...)
	e.cause = cause
	return e
}

// WithRetryAfter sets the Retry-After seconds and returns e.
func (e *Error) WithRetryAfter(seconds int) *Error {
	e.RetryAfter = seconds
	return e
}

// BadRequest is a 400 with a code.
func BadRequest(code, format string, args ...any) *Error {
	return New(http.StatusBadRequest, code, format, args...)
}

// As returns the *Error in err's chain, if any.
func As(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}

// CodeOf returns err's code, or "" when err carries none.
func CodeOf(err error) string {
	if e, ok := As(err); ok {
		return e.Code
	}
	return ""
}

// Write writes e as an envelope on w.
func Write(w http.ResponseWriter, e *Error) {
	w.Header().Set("Content-Type", "application/json")
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(e.RetryAfter))
	}
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(Envelope{Error: e})
}

// FromResponse turns a non-2xx response into an *Error, reading at most 64 KiB
// of the body. A body that is not an envelope still yields an error with the
// status and code "downstream_protocol". The body is not closed.
func FromResponse(resp *http.Response) *Error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var env Envelope
	if err := json.Unmarshal(body, &env); err == nil && env.Error != nil && env.Error.Code != "" {
		env.Error.Status = resp.StatusCode
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			_, _ = fmt.Sscan(ra, &env.Error.RetryAfter)
		}
		return env.Error
	}
	msg := string(body)
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return &Error{Status: resp.StatusCode, Code: CodeDownstreamProtocol, Message: fmt.Sprintf("unexpected %d response: %q", resp.StatusCode, msg)}
}
