package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lookalike-dev/lookalike/shared/apierror"
)

func TestHopErr(t *testing.T) {
	cases := []struct {
		name   string
		in     error
		status int
		code   string
	}{
		{"embed's unknown model", apierror.New(404, "not_found", "no model \"clip-v9\" is loaded"), 400, CodeUnknownModel},
		{"wrapped embed refusal", fmt.Errorf("POST x: %w", apierror.New(404, "not_found", "no model")), 400, CodeUnknownModel},
		{"embed refuses the gateway's tensor", apierror.BadRequest(apierror.CodeInvalidArgument, "tensor shape [1 3 224 224]"), 502, CodeDownstreamError},
		{"downstream busy", apierror.New(429, apierror.CodeOverloaded, "the model's queue is full"), 429, apierror.CodeOverloaded},
		{"pool unavailable", apierror.New(503, apierror.CodeUnavailable, "embed is unavailable").WithRetryAfter(1), 503, apierror.CodeUnavailable},
		{"downstream not ready", apierror.New(503, apierror.CodeNotReady, "draining"), 503, apierror.CodeUnavailable},
		{"downstream 500", apierror.New(500, apierror.CodeInternal, "bug"), 502, CodeDownstreamError},
		{"downstream 504", apierror.New(504, apierror.CodeDeadlineExceeded, "slow"), 504, apierror.CodeDeadlineExceeded},
		{"context deadline", fmt.Errorf("POST x: %w", context.DeadlineExceeded), 504, apierror.CodeDeadlineExceeded},
		{"garbage answer", errors.New("decoding embed response: short"), 502, apierror.CodeDownstreamProtocol},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, ok := apierror.As(hopErr("embed", c.in))
			if !ok || e.Status != c.status || e.Code != c.code {
				t.Fatalf("hopErr(%v) = %v, want %d %s", c.in, e, c.status, c.code)
			}
			if e.Status == 503 && e.RetryAfter < 1 {
				t.Fatal("503 without Retry-After")
			}
		})
	}
	if hopErr("x", nil) != nil {
		t.Fatal("nil error mapped to an error")
	}
	if err := hopErr("x", context.Canceled); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled mapped to %v", err)
	}
}

func TestTimingsHeader(t *testing.T) {
	tm := &Timings{}
	ctx := WithTimings(context.Background(), tm)
	track(ctx, "preprocess", time.Now().Add(-3*time.Millisecond))
	track(context.Background(), "ignored", time.Now())
	tm.Add("embed", 41*time.Millisecond+500*time.Microsecond)
	h := tm.Header(50 * time.Millisecond)
	if !strings.HasPrefix(h, "preprocess;dur=3.") || !strings.Contains(h, "embed;dur=41.5") || !strings.HasSuffix(h, "total;dur=50.0") || strings.Contains(h, "ignored") {
		t.Fatalf("Server-Timing %q", h)
	}
	_ = http.StatusOK
}

// TestDownstreamRefusalsMapped: a downstream's 4xx reaches the caller as
// the gateway's own code and message; collection, alias and model names and
// the downstream's own text stay out (they remain the cause, for the logs).
func TestDownstreamRefusalsMapped(t *testing.T) {
	const leak = "products__clip-vit-b32-v3"
	cases := []struct {
		hop    string
		in     *apierror.Error
		status int
		code   string
	}{
		{"preprocess", apierror.New(422, "corrupt_image", "jpeg: unexpected EOF in "+leak), 422, "corrupt_image"},
		{"preprocess", apierror.New(415, "unsupported_format", "magic bytes of "+leak), 415, "unsupported_format"},
		{"preprocess", apierror.New(413, "image_too_large", leak), 413, "image_too_large"},
		{"preprocess", apierror.New(422, "dimensions_too_large", leak), 422, "dimensions_too_large"},
		{"preprocess", apierror.New(400, "empty_body", leak), 400, "empty_body"},
		{"preprocess", apierror.New(422, "image_too_complex", leak), 422, "image_too_complex"},
		{"preprocess", apierror.New(422, "some_future_code", leak), 422, CodeInvalidImage},
		{"preprocess", apierror.New(400, "invalid_argument", "dtype "+leak), 502, CodeDownstreamError},
		{"embed", apierror.New(404, "not_found", "no model "+leak+" is loaded"), 400, CodeUnknownModel},
		{"embed", apierror.New(413, "payload_too_large", "body is over "+leak), 502, CodeDownstreamError},
		{"embed", apierror.New(418, "teapot", leak), 418, CodeRefused},
		{"search", apierror.New(404, "not_found", "alias "+leak+" not found"), 404, "not_found"},
		{"search", apierror.New(400, "model_mismatch", "collection "+leak+" holds model x"), 400, "model_mismatch"},
		{"search", apierror.New(400, "dimension_mismatch", leak+": dim 512"), 400, "dimension_mismatch"},
		{"search", apierror.New(400, "invalid_filter", "price_min 3 is above price_max 1 in "+leak), 400, "invalid_filter"},
		{"search", apierror.New(400, "invalid_name", "collection "+leak+" is not <catalog>__<model>"), 400, apierror.CodeInvalidArgument},
		{"search", apierror.New(400, "invalid_payload", leak+": payload price must be a number"), 400, CodeInvalidMetadata},
		{"search", apierror.New(400, "too_many_points", leak), 502, CodeDownstreamError},
		{"search", apierror.New(409, "conflict", "alias "+leak+" already points at x"), 409, "conflict"},
		{"search", apierror.New(400, "bad_request", "Qdrant: Wrong input: Collection `"+leak+"` doesn't exist"), 400, CodeRefused},
	}
	for _, c := range cases {
		t.Run(c.hop+"/"+c.in.Code, func(t *testing.T) {
			c.in.RequestID = "downstream-request-id"
			err := hopErr(c.hop, fmt.Errorf("POST %s: %w", c.hop, c.in))
			e, ok := apierror.As(err)
			if !ok || e.Status != c.status || e.Code != c.code {
				t.Fatalf("got %v, want %d %s", err, c.status, c.code)
			}
			if strings.Contains(e.Message, leak) || strings.Contains(e.Message, c.in.Message) || e.Message == "" || e.RequestID != "" {
				t.Fatalf("message %q (request id %q) carries the downstream's text or is empty", e.Message, e.RequestID)
			}
			if !strings.Contains(err.Error(), leak) {
				t.Fatalf("the cause is lost for the logs: %v", err)
			}
		})
	}
}
