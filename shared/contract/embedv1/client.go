package embedv1

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/lookalike-dev/lookalike/shared/bufpool"
	"github.com/lookalike-dev/lookalike/shared/contract/internal/wire"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"
)

// Client calls an embed service.
type Client struct {
	BaseURL string    // e.g. http://127.0.0.1:8082
	HTTP    wire.Doer // nil means http.DefaultClient
}

func (c *Client) doer() wire.Doer {
	if c.HTTP == nil {
		return http.DefaultClient
	}
	return c.HTTP
}

func (c *Client) url(route string) string { return strings.TrimRight(c.BaseURL, "/") + route }

// Embed sends a tensor [N,...] and returns N embeddings from model (empty:
// the default model). The answer names the model that produced them.
func (c *Client) Embed(ctx context.Context, t tensorv1.Tensor, model string) (Embeddings, error) {
	return c.EmbedHeld(ctx, t, nil, model)
}

// EmbedHeld is Embed for a tensor whose buffer hold guards (a pooled
// buffer): hold is retained while the transport may still read the tensor,
// which can outlast the call.
func (c *Client) EmbedHeld(ctx context.Context, t tensorv1.Tensor, hold bufpool.Holder, model string) (Embeddings, error) {
	// The header and the data go out as two parts: a 600 KB tensor is not
	// copied into a request buffer first.
	if err := t.Validate(); err != nil {
		return Embeddings{}, fmt.Errorf("encoding tensor: %w", err)
	}
	hdr := tensorv1.AppendHeader(make([]byte, 0, tensorv1.HeaderSize(len(t.Shape))), t.DType, t.Shape)
	u := c.url(RouteEmbed)
	if model != "" {
		u += "?" + ParamModel + "=" + url.QueryEscape(model)
	}
	b, h, err := wire.Send(ctx, c.doer(), wire.Request{Method: http.MethodPost, URL: u, ContentType: tensorv1.MediaType,
		Parts: [][]byte{hdr, t.Data}, Hold: hold, Header: http.Header{"Accept": {EmbeddingsMediaType}}})
	if err != nil {
		return Embeddings{}, err
	}
	e := Embeddings{ModelID: h.Get(HeaderModelID), ModelVersion: h.Get(HeaderModelVersion)}
	count, err1 := strconv.Atoi(h.Get(HeaderCount))
	dim, err2 := strconv.Atoi(h.Get(HeaderDim))
	if err1 != nil || err2 != nil || e.ModelID == "" {
		return Embeddings{}, fmt.Errorf("embed response lacks model, count or dim headers")
	}
	e.Dim = dim
	if e.Vectors, err = UnmarshalVectors(b, count, dim); err != nil {
		return Embeddings{}, fmt.Errorf("decoding embed response: %w", err)
	}
	if count != t.Shape[0] {
		return Embeddings{}, fmt.Errorf("embed returned %d vectors for %d inputs", count, t.Shape[0])
	}
	return e, nil
}

// Models lists the loaded models.
func (c *Client) Models(ctx context.Context) ([]ModelSpec, error) {
	var l ModelList
	if err := wire.JSON(ctx, c.doer(), http.MethodGet, c.url(RouteModels), nil, &l); err != nil {
		return nil, err
	}
	return l.Models, nil
}

// Model returns one model's spec.
func (c *Client) Model(ctx context.Context, id string) (ModelSpec, error) {
	var m ModelSpec
	err := wire.JSON(ctx, c.doer(), http.MethodGet, c.url(RouteModels+"/"+url.PathEscape(id)), nil, &m)
	return m, err
}
