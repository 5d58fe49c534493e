// Package wire holds the request plumbing the contract clients share.
package wire

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/bufpool"
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
	r := Request{Method: method, URL: url, ContentType: contentType, Header: hdr}
	if body != nil {
		r.Parts = [][]byte{body}
	}
	return Send(ctx, d, r)
}

// Request is one call.
type Request struct {
	Method, URL, ContentType string
	Header                   http.Header
	// Parts are the body, sent one after another (a tensor's header, then
	// its data) without first being joined into one copy; nil: no body.
	// They must stay unchanged until the call returns, and past it while
	// Hold is held.
	Parts [][]byte
	// Hold, when set, is retained for each body the transport is given
	// (a retrying Doer replays it) and released when the transport closes
	// it, which net/http may do after the call returned: the buffer under
	// Parts is recycled only once nothing reads it.
	Hold bufpool.Holder
	// Pool, when set, supplies the response buffer: the caller owns it and
	// may Put it back once done with it.
	Pool *bufpool.Pool
}

// Send sends r and returns the body of a 2xx response. A non-2xx response
// becomes an *apierror.Error carrying the downstream code.
func Send(ctx context.Context, d Doer, r Request) ([]byte, http.Header, error) {
	method, url := r.Method, r.URL
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("building %s %s: %w", method, url, err)
	}
	if r.Parts != nil {
		setBody(req, r.Parts, r.Hold)
	}
	if r.ContentType != "" {
		req.Header.Set("Content-Type", r.ContentType)
	}
	for k, vs := range r.Header {
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
	// One buffer sized from the declared length (a tensor is 600 KB), from
	// r.Pool when there is one.
	b, err := r.Pool.ReadAll(resp.Body, readall.Hint(resp.ContentLength, MaxResponse, 0), MaxResponse)
	if errors.Is(err, bufpool.ErrTooLarge) {
		return nil, resp.Header, fmt.Errorf("%s %s: response over %d bytes", method, url, MaxResponse)
	}
	if err != nil {
		return nil, resp.Header, fmt.Errorf("reading %s %s: %w", method, url, err)
	}
	return b, resp.Header, nil
}

// setBody makes parts req's body, with its length declared and a GetBody
// that replays it. Each body opened retains hold until it is closed.
func setBody(req *http.Request, parts [][]byte, hold bufpool.Holder) {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if n == 0 {
		req.Body, req.GetBody = http.NoBody, func() (io.ReadCloser, error) { return http.NoBody, nil }
		return
	}
	open := func() io.ReadCloser {
		var rd io.Reader
		if len(parts) == 1 {
			rd = bytes.NewReader(parts[0])
		} else {
			// net.Buffers consumes its slice of slices (never the bytes):
			// each replay reads from its own copy of it.
			b := net.Buffers(slices.Clone(parts))
			rd = &b
		}
		if hold == nil {
			return io.NopCloser(rd)
		}
		hold.Retain()
		return &heldBody{Reader: rd, hold: hold}
	}
	req.ContentLength = int64(n)
	req.Body = open()
	req.GetBody = func() (io.ReadCloser, error) { return open(), nil }
}

// heldBody releases its hold on the first Close.
type heldBody struct {
	io.Reader
	hold bufpool.Holder
	once sync.Once
}

func (b *heldBody) Close() error {
	b.once.Do(b.hold.Release)
	return nil
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
