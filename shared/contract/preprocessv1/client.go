package preprocessv1

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"strings"

	"github.com/lookalike-dev/lookalike/shared/bufpool"
	"github.com/lookalike-dev/lookalike/shared/contract/internal/wire"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"
)

// Client calls a preprocess service.
type Client struct {
	BaseURL string    // e.g. http://127.0.0.1:8081
	HTTP    wire.Doer // *http.Client or a wrapper; nil means http.DefaultClient
	// SkipPHash asks single-image calls to skip the perceptual hash
	// (HeaderSkip), for callers that never read Facts.PHash.
	SkipPHash bool
}

func (c *Client) doer() wire.Doer {
	if c.HTTP == nil {
		return http.DefaultClient
	}
	return c.HTTP
}

// Preprocess sends one image and returns its tensor [1,...] and facts.
// A zero spec means the service's default.
func (c *Client) Preprocess(ctx context.Context, image []byte, spec *Spec) (tensorv1.Tensor, Facts, error) {
	t, f, _, err := c.preprocess(ctx, image, nil, spec, nil)
	return t, f, err
}

// PreprocessPooled is Preprocess for pooled buffers. imageHold (may be nil)
// guards image's buffer: it is retained while the transport may still read
// the image, which can outlast the call. The tensor is read into a buffer
// from pool: the returned lease holds it, and the caller releases it when
// done with the tensor (pass it on as the hold of the call that sends it).
func (c *Client) PreprocessPooled(ctx context.Context, image []byte, imageHold bufpool.Holder, spec *Spec, pool *bufpool.Pool) (tensorv1.Tensor, Facts, *bufpool.Lease, error) {
	return c.preprocess(ctx, image, imageHold, spec, pool)
}

func (c *Client) preprocess(ctx context.Context, image []byte, imageHold bufpool.Holder, spec *Spec, pool *bufpool.Pool) (tensorv1.Tensor, Facts, *bufpool.Lease, error) {
	hdr := http.Header{"Accept": {tensorv1.MediaType}}
	if spec != nil {
		hdr.Set(HeaderSpec, spec.Encode())
	}
	if c.SkipPHash {
		hdr.Set(HeaderSkip, SkipPHash)
	}
	b, rh, err := wire.Send(ctx, c.doer(), wire.Request{Method: http.MethodPost, URL: strings.TrimRight(c.BaseURL, "/") + RoutePreprocess,
		ContentType: "application/octet-stream", Parts: [][]byte{image}, Hold: imageHold, Header: hdr, Pool: pool})
	if err != nil {
		return tensorv1.Tensor{}, Facts{}, nil, err
	}
	t, f, err := decodeTensorResponse(b, rh)
	if err != nil {
		pool.Put(b)
		return tensorv1.Tensor{}, Facts{}, nil, err
	}
	var l *bufpool.Lease
	if pool != nil {
		l = pool.Lease(b)
	}
	return t, f, l, nil
}

func decodeTensorResponse(b []byte, rh http.Header) (tensorv1.Tensor, Facts, error) {
	var f Facts
	if fh := rh.Get(HeaderFacts); fh != "" {
		if err := json.Unmarshal([]byte(fh), &f); err != nil {
			return tensorv1.Tensor{}, Facts{}, fmt.Errorf("decoding %s header: %w", HeaderFacts, err)
		}
	}
	t, err := tensorv1.Unmarshal(b)
	if err != nil {
		return tensorv1.Tensor{}, Facts{}, fmt.Errorf("decoding preprocess response: %w", err)
	}
	return t, f, nil
}

// PreprocessBatch sends several images in one request. One bad image fails
// only its own item.
func (c *Client) PreprocessBatch(ctx context.Context, images [][]byte, spec *Spec) (BatchMeta, *tensorv1.Tensor, error) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for i, img := range images {
		w, err := mw.CreateFormFile("image", fmt.Sprintf("%d", i))
		if err != nil {
			return BatchMeta{}, nil, fmt.Errorf("building batch: %w", err)
		}
		if _, err := w.Write(img); err != nil {
			return BatchMeta{}, nil, fmt.Errorf("building batch: %w", err)
		}
	}
	if err := mw.Close(); err != nil {
		return BatchMeta{}, nil, fmt.Errorf("building batch: %w", err)
	}
	hdr := http.Header{"Accept": {BatchMediaType}}
	if spec != nil {
		hdr.Set(HeaderSpec, spec.Encode())
	}
	b, _, err := wire.Call(ctx, c.doer(), http.MethodPost, strings.TrimRight(c.BaseURL, "/")+RoutePreprocessBatch, mw.FormDataContentType(), body.Bytes(), hdr)
	if err != nil {
		return BatchMeta{}, nil, err
	}
	return UnmarshalBatch(b)
}
