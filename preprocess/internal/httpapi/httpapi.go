// Package httpapi serves the preprocessv1 contract over echo: POST
// /v1/preprocess (one image -> tensorv1, or the JSON debug view) and POST
// /v1/preprocess/batch (multipart "image" parts -> the batch media type).
package httpapi

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/x448/float16"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/bufpool"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"
	"github.com/lookalike-dev/lookalike/shared/readall"

	"github.com/lookalike-dev/lookalike/preprocess/internal/preprocessor"
)

// Config bounds requests.
type Config struct {
	// MaxBytes is the most bytes of one image (image_too_large above it).
	MaxBytes int64
	// MaxBatchImages is the most "image" parts in one batch.
	MaxBatchImages int
	// Timeout is the per-request deadline.
	Timeout time.Duration
}

// Handler serves the routes.
type Handler struct {
	p   *preprocessor.Processor
	cfg Config
	// bodies recycles single-image request bodies (a photo is ~700 KB).
	bodies bufpool.Pool
}

// New builds the handler.
func New(p *preprocessor.Processor, cfg Config) *Handler {
	if cfg.MaxBatchImages <= 0 {
		cfg.MaxBatchImages = 64
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	return &Handler{p: p, cfg: cfg}
}

// Register adds the routes to e.
func (h *Handler) Register(e *echo.Echo) {
	e.POST(preprocessv1.RoutePreprocess, h.preprocess)
	e.POST(preprocessv1.RoutePreprocessBatch, h.batch)
}

func tooLarge(n int64) *apierror.Error {
	return apierror.New(preprocessv1.StatusOf(preprocessv1.CodeImageTooLarge), preprocessv1.CodeImageTooLarge,
		"the image is over the %d byte limit", n)
}

// readLimited reads at most max bytes; more is image_too_large. A declared
// length within max sizes the buffer, so an upload is read into one
// allocation instead of a dozen growing copies. With a pool (nil: none),
// the buffer comes from it (and the caller puts it back).
func readLimited(r io.Reader, max, declared int64, pool *bufpool.Pool) ([]byte, error) {
	// At most 8 MiB reserved before the bytes arrive.
	b, err := pool.ReadAll(r, readall.Hint(declared, max, 8<<20), int(max))
	if errors.Is(err, bufpool.ErrTooLarge) {
		return nil, tooLarge(max)
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, apierror.New(http.StatusRequestEntityTooLarge, apierror.CodePayloadTooLarge, "request body is over the %d byte limit", mbe.Limit)
	}
	if err != nil {
		return nil, apierror.Wrap(err, http.StatusBadRequest, apierror.CodeBadRequest, "reading the request body failed")
	}
	return b, nil
}

func wantsJSON(c echo.Context) bool {
	for _, part := range strings.Split(c.Request().Header.Get(echo.HeaderAccept), ",") {
		mt, _, _ := mime.ParseMediaType(strings.TrimSpace(part))
		if mt == echo.MIMEApplicationJSON {
			return true
		}
	}
	return false
}

func (h *Handler) preprocess(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), h.cfg.Timeout)
	defer cancel()
	spec, err := h.p.ParseSpec(c.Request().Header.Get(preprocessv1.HeaderSpec))
	if err != nil {
		return err
	}
	// The body is sniffed; its Content-Type is not trusted either way.
	data, err := readLimited(c.Request().Body, h.cfg.MaxBytes, c.Request().ContentLength, &h.bodies)
	if err != nil {
		return err
	}
	defer h.bodies.Put(data) // the image is decoded before the handler returns
	call := preprocessor.Call{NoHash: skips(c.Request().Header, preprocessv1.SkipPHash)}
	r, err := h.p.ProcessCall(ctx, data, spec, call)
	if err != nil {
		return err
	}
	defer h.p.Recycle(r.Data) // written (or encoded as JSON) before the handler returns
	fj, err := json.Marshal(r.Facts)
	if err != nil {
		return fmt.Errorf("encoding facts: %w", err)
	}
	c.Response().Header().Set(preprocessv1.HeaderFacts, string(fj))
	t := tensorv1.Tensor{DType: preprocessor.DType(spec), Shape: spec.Shape(1), Data: r.Data}
	if wantsJSON(c) {
		return c.JSON(http.StatusOK, preprocessv1.DebugResponse{Facts: r.Facts, Spec: spec, DType: spec.DType, Shape: t.Shape, Data: floats(t)})
	}
	c.Response().Header().Set(echo.HeaderContentType, tensorv1.MediaType)
	// A declared length lets the caller read the tensor into one buffer
	// (without it a large body goes out chunked).
	c.Response().Header().Set(echo.HeaderContentLength, strconv.Itoa(tensorv1.HeaderSize(len(t.Shape))+len(t.Data)))
	c.Response().WriteHeader(http.StatusOK)
	if _, err := t.WriteTo(c.Response()); err != nil {
		return fmt.Errorf("writing tensor: %w", err)
	}
	return nil
}

// skips says whether the request's HeaderSkip (a comma-separated list, in
// one header or several) names what.
func skips(h http.Header, what string) bool {
	for _, v := range h.Values(preprocessv1.HeaderSkip) {
		for _, w := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(w), what) {
				return true
			}
		}
	}
	return false
}

// floats decodes t's data (float32, float16 or uint8 levels) for the debug view.
func floats(t tensorv1.Tensor) []float32 {
	if t.DType == tensorv1.Uint8 {
		out := make([]float32, len(t.Data))
		for i, v := range t.Data {
			out[i] = float32(v)
		}
		return out
	}
	if t.DType == tensorv1.Float16 {
		out := make([]float32, len(t.Data)/2)
		for i := range out {
			out[i] = float16.Frombits(binary.LittleEndian.Uint16(t.Data[2*i:])).Float32()
		}
		return out
	}
	out := make([]float32, len(t.Data)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return out
}

func (h *Handler) batch(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), h.cfg.Timeout)
	defer cancel()
	spec, err := h.p.ParseSpec(c.Request().Header.Get(preprocessv1.HeaderSpec))
	if err != nil {
		return err
	}
	mt, _, err := mime.ParseMediaType(c.Request().Header.Get(echo.HeaderContentType))
	if err != nil || mt != echo.MIMEMultipartForm {
		return apierror.New(http.StatusUnsupportedMediaType, apierror.CodeUnsupportedMedia, "a batch is multipart/form-data with one or more \"image\" parts")
	}
	mr, err := c.Request().MultipartReader()
	if err != nil {
		return apierror.Wrap(err, http.StatusBadRequest, apierror.CodeBadRequest, "reading the multipart body failed")
	}
	var items []preprocessor.Item
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return apierror.New(http.StatusRequestEntityTooLarge, apierror.CodePayloadTooLarge, "request body is over the %d byte limit", mbe.Limit)
		}
		if err != nil {
			return apierror.Wrap(err, http.StatusBadRequest, apierror.CodeBadRequest, "reading the multipart body failed")
		}
		if part.FormName() != "image" {
			_ = part.Close()
			continue
		}
		if len(items) == h.cfg.MaxBatchImages {
			return apierror.BadRequest(apierror.CodeInvalidArgument, "a batch holds at most %d images", h.cfg.MaxBatchImages)
		}
		data, err := readLimited(part, h.cfg.MaxBytes, 0, nil)
		if e, ok := apierror.As(err); ok && e.Code == preprocessv1.CodeImageTooLarge {
			// This image fails; the batch goes on.
			if _, derr := io.Copy(io.Discard, part); derr != nil {
				return apierror.Wrap(derr, http.StatusBadRequest, apierror.CodeBadRequest, "reading the multipart body failed")
			}
			items = append(items, preprocessor.Item{Err: e})
			continue
		}
		if err != nil {
			return err
		}
		items = append(items, preprocessor.Item{Data: data})
	}
	if len(items) == 0 {
		return apierror.New(preprocessv1.StatusOf(preprocessv1.CodeEmptyBody), preprocessv1.CodeEmptyBody, "the batch has no \"image\" parts")
	}
	meta, t := h.p.ProcessBatch(ctx, items, spec)
	body, err := preprocessv1.MarshalBatch(meta, t)
	if err != nil {
		return fmt.Errorf("encoding batch: %w", err)
	}
	c.Response().Header().Set(echo.HeaderContentLength, strconv.Itoa(len(body)))
	return c.Blob(http.StatusOK, preprocessv1.BatchMediaType, body)
}
