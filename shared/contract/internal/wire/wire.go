// Package wire holds the request plumbing the contract clients share.
package wire

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/readall"
)

// Doer sends requests; *http.Client is one. Callers add tracing, balancing,
// retries and circuit breaking by wrapping it.
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// MaxResponse bounds every response body a client reads.
const MaxResponse = 256 << 20

// Call sends a request and returns the body of a 2xx response. A non-2xx
// response becomes an *apierror.Error carrying the downstream code.
func Call(ctx context.Context, d Doer, method, url, contentType string, body []byte, hdr http.Header) ([]byte, http.Header, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, nil, fmt.Errorf("building %s %s: %w", method, url, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, vs := range hdr {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := d.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, resp.Header, apierror.FromResponse(resp)
	}
	// One buffer sized from the declared length (a tensor is 600 KB).
	b, err := readall.ReadAll(io.LimitReader(resp.Body, MaxResponse+1), readall.Hint(resp.ContentLength, MaxResponse, 0))
	if err != nil {
		return nil, resp.Header, fmt.Errorf("reading %s %s: %w", method, url, err)
	}
	if len(b) > MaxResponse {
		return nil, resp.Header, fmt.Errorf("%s %s: response over %d bytes", method, url, MaxResponse)
	}
	return b, resp.Header, nil
}

// JSON sends in as JSON (when not nil) and decodes a 2xx body into out (when not nil).
func JSON(ctx context.Context, d Doer, method, url string, in, out any) error {
	var body []byte
	ct := ""
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("encoding %s %s: %w", method, url, err)
		}
		ct = "application/json"
	}
	b, _, err := Call(ctx, d, method, url, ct, body, nil)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decoding %s %s: %w", method, url, err)
	}
	return nil
}
