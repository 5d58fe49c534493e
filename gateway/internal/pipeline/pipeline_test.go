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
		{"downstream 4xx passes through", apierror.BadRequest("corrupt_image", "truncated"), 400, "corrupt_image"},
		{"downstream 415 passes through", apierror.New(415, "unsupported_format", "x"), 415, "unsupported_format"},
		{"wrapped 4xx passes through", fmt.Errorf("POST x: %w", apierror.New(404, "not_found", "no sku")), 404, "not_found"},
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
