// Package httpapi serves the embed contract (shared/contract/embedv1) over echo:
// POST /v1/embed, GET /v1/models and GET /v1/models/{id}.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lookalike-dev/lookalike/embed/internal/batcher"
	"github.com/lookalike-dev/lookalike/embed/internal/modelspec"
	"github.com/lookalike-dev/lookalike/embed/internal/registry"
	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/bufpool"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"
)

// CodeCanceled answers a request its caller abandoned (status 499).
const CodeCanceled = "canceled"

// Config of the handlers.
type Config struct {
	// MaxRequestImages caps the images in one request (default 64).
	MaxRequestImages int
	// RequestTimeout bounds a request that sets no Lookalike-Timeout-Ms (default 30 s).
	RequestTimeout time.Duration
}

// Handler serves the embed routes.
type Handler struct {
	reg *registry.Registry
	cfg Config
	// bodies recycles request bodies: a batch of 32 float32 224x224 images
	// is 19 MB, and allocating it per request slowed the inferences sharing
	// the cores by about 10% (measured).
	bodies bufpool.Pool
}

// New returns the handler.
func New(reg *registry.Registry, cfg Config) *Handler {
	if cfg.MaxRequestImages <= 0 {
		cfg.MaxRequestImages = 64
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	return &Handler{reg: reg, cfg: cfg}
}

// Register adds the routes to e.
func (h *Handler) Register(e *echo.Echo) {
	e.POST(embedv1.RouteEmbed, h.Embed)
	e.GET(embedv1.RouteModels, h.Models)
	e.GET(embedv1.RouteModel, h.Model)
}

func (h *Handler) acquire(id string) (*registry.Model, func(), error) {
	m, release, err := h.reg.Acquire(id)
	switch {
	case errors.Is(err, registry.ErrNotLoaded):
		return nil, nil, apierror.New(http.StatusServiceUnavailable, apierror.CodeNotReady, "models are still loading").WithRetryAfter(1)
	case errors.Is(err, registry.ErrNotFound):
		return nil, nil, apierror.New(http.StatusNotFound, apierror.CodeNotFound, "no model %q is loaded", id)
	case err != nil:
		return nil, nil, err
	}
	return m, release, nil
}

func setModelHeaders(c echo.Context, m *registry.Model) {
	h := c.Response().Header()
	h.Set(embedv1.HeaderModelID, m.Spec().ID)
	h.Set(embedv1.HeaderModelVersion, m.Spec().Version)
}

// Models lists the loaded models.
func (h *Handler) Models(c echo.Context) error {
	if !h.reg.Ready() {
		return apierror.New(http.StatusServiceUnavailable, apierror.CodeNotReady, "models are still loading").WithRetryAfter(1)
	}
	return c.JSON(http.StatusOK, embedv1.ModelList{Models: h.reg.List()})
}

// Model serves one model's spec.
func (h *Handler) Model(c echo.Context) error {
	m, release, err := h.acquire(c.Param("id"))
	if err != nil {
		return err
	}
	defer release()
	setModelHeaders(c, m)
	return c.JSON(http.StatusOK, h.reg.Public(m))
}

// Embed embeds a tensorv1 batch with the model named by ?model= (or the default).
func (h *Handler) Embed(c echo.Context) error {
	m, release, err := h.acquire(c.QueryParam(embedv1.ParamModel))
	if err != nil {
		return err
	}
	defer release()
	setModelHeaders(c, m)
	spec := m.Spec()
	req := c.Request()

	if ct := req.Header.Get(echo.HeaderContentType); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != tensorv1.MediaType {
			return apierror.New(http.StatusUnsupportedMediaType, apierror.CodeUnsupportedMedia, "body must be %s, got %q", tensorv1.MediaType, ct)
		}
	}
	timeout := h.cfg.RequestTimeout
	if v := req.Header.Get(embedv1.HeaderTimeout); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms < 1 {
			return apierror.BadRequest(apierror.CodeInvalidArgument, "%s must be a positive number of milliseconds, got %q", embedv1.HeaderTimeout, v)
		}
		timeout = min(timeout, time.Duration(ms)*time.Millisecond)
	}

	maxBody := int64(tensorv1.HeaderSize(len(spec.Input.Shape))) + int64(h.cfg.MaxRequestImages)*int64(spec.ItemBytes())
	body, err := h.readBody(req, maxBody)
	if err != nil {
		return err
	}
	t, err := tensorv1.Unmarshal(body)
	if err != nil {
		return apierror.BadRequest(apierror.CodeInvalidArgument, "%v", err)
	}
	if err := checkTensor(t, spec); err != nil {
		return err
	}
	n := t.Shape[0]
	if n > h.cfg.MaxRequestImages {
		return apierror.New(http.StatusRequestEntityTooLarge, apierror.CodePayloadTooLarge, "%d images in one request, at most %d", n, h.cfg.MaxRequestImages)
	}

	ctx, cancel := context.WithTimeout(req.Context(), timeout)
	defer cancel()
	rows, err := m.EmbedTensor(ctx, t)
	if err != nil {
		// The batcher may still hold the body (a request that ended while
		// queued): leave it to the garbage collector.
		return embedError(err, req.Context())
	}
	// Every batch that read the body has run: reuse it.
	h.bodies.Put(body)

	hdr := c.Response().Header()
	hdr.Set(embedv1.HeaderDim, strconv.Itoa(spec.Dim))
	hdr.Set(embedv1.HeaderCount, strconv.Itoa(n))
	if wantsJSON(req.Header.Get(echo.HeaderAccept)) {
		return c.JSON(http.StatusOK, embedv1.EmbedResponse{ModelID: spec.ID, ModelVersion: spec.Version, Dim: spec.Dim, Embeddings: rows})
	}
	out := embedv1.MarshalVectors(rows)
	hdr.Set(echo.HeaderContentLength, strconv.Itoa(len(out))) // one read buffer on the caller's side
	return c.Blob(http.StatusOK, embedv1.EmbeddingsMediaType, out)
}

func (h *Handler) readBody(req *http.Request, limit int64) ([]byte, error) {
	if req.ContentLength > limit {
		return nil, apierror.New(http.StatusRequestEntityTooLarge, apierror.CodePayloadTooLarge, "body of %d bytes is over this model's %d byte limit", req.ContentLength, limit)
	}
	var b []byte
	var err error
	if req.ContentLength > 0 {
		b = h.bodies.Get(int(req.ContentLength))
		_, err = io.ReadFull(req.Body, b)
	} else {
		b, err = io.ReadAll(io.LimitReader(req.Body, limit+1))
		if err == nil && int64(len(b)) > limit {
			return nil, apierror.New(http.StatusRequestEntityTooLarge, apierror.CodePayloadTooLarge, "body is over this model's %d byte limit", limit)
		}
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, err
		}
		return nil, apierror.Wrap(err, http.StatusBadRequest, apierror.CodeInvalidArgument, "reading the body failed")
	}
	if len(b) == 0 {
		return nil, apierror.BadRequest(apierror.CodeInvalidArgument, "empty body: send a %s tensor", tensorv1.MediaType)
	}
	return b, nil
}

func checkTensor(t tensorv1.Tensor, spec modelspec.Spec) error {
	if !spec.Takes(t.DType) {
		takes := strings.Join(append([]string{spec.InputDType().String()}, spec.WireDTypes()...), " or ")
		return apierror.BadRequest(apierror.CodeInvalidArgument, "tensor is %s, the model takes %s", t.DType, takes)
	}
	shape := spec.Input.Shape
	want := make([]int, len(shape)-1)
	for i, d := range shape[1:] {
		want[i] = int(d)
	}
	if len(t.Shape) != len(shape) || !slices.Equal(t.Shape[1:], want) {
		return apierror.BadRequest(apierror.CodeInvalidArgument, "tensor shape %v does not match the model input [N %s]", t.Shape, strings.Trim(fmt.Sprint(want), "[]"))
	}
	return nil
}

func embedError(err error, reqCtx context.Context) error {
	switch {
	case errors.Is(err, batcher.ErrOverloaded):
		return apierror.New(http.StatusTooManyRequests, apierror.CodeOverloaded, "the model's queue is full, retry later").WithRetryAfter(1)
	case errors.Is(err, batcher.ErrClosed):
		return apierror.New(http.StatusServiceUnavailable, apierror.CodeUnavailable, "the model is being unloaded, retry").WithRetryAfter(1)
	case errors.Is(err, context.Canceled) && reqCtx.Err() != nil:
		return apierror.New(499, CodeCanceled, "the request was canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return apierror.New(http.StatusGatewayTimeout, apierror.CodeDeadlineExceeded, "the request's deadline passed before its inference ran")
	}
	return apierror.Wrap(err, http.StatusInternalServerError, apierror.CodeInternal, "embedding failed")
}

func wantsJSON(accept string) bool {
	return strings.Contains(accept, echo.MIMEApplicationJSON) && !strings.Contains(accept, embedv1.EmbeddingsMediaType)
}
