package apierror

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestFromResponse(t *testing.T) {
	tests := []struct {
		name, body string
		status     int
		wantCode   string
		retryAfter string
		wantRA     int
	}{
		{"envelope", `{"error":{"code":"corrupt_image","message":"cut short"}}`, 400, "corrupt_image", "", 0},
		{"retry after", `{"error":{"code":"overloaded","message":"busy"}}`, 429, "overloaded", "3", 3},
		{"not an envelope", `<html>bad gateway</html>`, 502, CodeDownstreamProtocol, "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tc.status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(tc.body))}
			if tc.retryAfter != "" {
				resp.Header.Set("Retry-After", tc.retryAfter)
			}
			e := FromResponse(resp)
			if e.Status != tc.status || e.Code != tc.wantCode || e.RetryAfter != tc.wantRA {
				t.Fatalf("got %+v", e)
			}
		})
	}
}

func TestWriteAndWrap(t *testing.T) {
	rec := httptest.NewRecorder()
	Write(rec, New(429, CodeOverloaded, "queue %s", "full").WithRetryAfter(2))
	if rec.Code != 429 || rec.Header().Get("Retry-After") != "2" || !strings.Contains(rec.Body.String(), `"code":"overloaded"`) {
		t.Fatalf("Write: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	cause := errors.New("disk full")
	err := fmt.Errorf("upserting: %w", Wrap(cause, 503, CodeUnavailable, "index unavailable"))
	if CodeOf(err) != CodeUnavailable || !errors.Is(err, cause) {
		t.Fatalf("wrapping lost code or cause: %v", err)
	}
	if CodeOf(errors.New("plain")) != "" {
		t.Fatal("plain error has a code")
	}
}
