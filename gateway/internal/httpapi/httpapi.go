// Package httpapi is the gateway's public HTTP API on echo: search by photo,
// image URL or SKU; the admin product API behind bearer keys; product
// images; the shoppers' web page; and the OpenAPI document. Server spans,
// RED metrics, access logs and the error envelope come from shared/server.
package httpapi

import (
	"context"
	_ "embed"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lookalike-dev/lookalike/gateway/internal/guard"
	"github.com/lookalike-dev/lookalike/gateway/internal/pipeline"
	"github.com/lookalike-dev/lookalike/gateway/internal/productimage"
	"github.com/lookalike-dev/lookalike/gateway/internal/web"
	"github.com/lookalike-dev/lookalike/shared/adminkey"
	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/gatewayv1"
	"github.com/lookalike-dev/lookalike/shared/safefetch"
)

// OpenAPI is the API description served at /openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

// Routes, the contract's.
const (
	RouteSearch       = gatewayv1.RouteSearch
	RouteModels       = gatewayv1.RouteModels
	RouteProducts     = gatewayv1.RouteProducts
	RouteProduct      = gatewayv1.RouteProduct
	RouteProductImage = gatewayv1.RouteProductImage
	RouteOpenAPI      = gatewayv1.RouteOpenAPI
)

// HeaderModelOverride forces a search onto the stable or the canary arm
// ("stable", "canary" or a model id). Only admins may send it.
const HeaderModelOverride = "Lookalike-Model"

// CodeOverrideForbidden refuses a search that forces an arm without a
// valid admin key.
const CodeOverrideForbidden = "model_override_forbidden"

// ModelChooser picks the model (vector space) that answers a query. The
// requested model is what the client asked for ("" for none). The canary
// traffic split plugs in here: a sticky hash of the client decides between
// the stable and the canary model.
type ModelChooser interface {
	Choose(r *http.Request, requested string) string
}

// AsRequested uses the model the client asked for, else embed's default.
type AsRequested struct{}

// Choose returns requested.
func (AsRequested) Choose(_ *http.Request, requested string) string { return requested }

// Limits bound what one request may cost.
type Limits struct {
	// MaxUpload bounds an uploaded image or multipart body (10 MiB).
	MaxUpload int64
	// RequestTimeout is the overall deadline of an API request (10 s),
	// propagated to every downstream call.
	RequestTimeout time.Duration
	// MaxInFlight API requests are served at once (64); more wait QueueWait,
	// then get 429 overloaded with Retry-After.
	MaxInFlight int
	QueueWait   time.Duration
	// Rate limits each client IP on the public routes and each admin key on
	// the admin routes.
	Rate      guard.RateConfig
	AdminRate guard.RateConfig
}

// Backend runs queries and product writes: a *pipeline.Pipeline, or the
// canary router over several.
type Backend = pipeline.Backend

// Deps are what the API serves with.
type Deps struct {
	Pipeline Backend
	Fetcher  *safefetch.Fetcher
	Images   *productimage.Source
	Keys     *adminkey.Keys
	// ClientIP finds a request's client IP for every route (rate limits,
	// failed-key limits, logs); nil: the connection's peer.
	ClientIP echo.IPExtractor
	Chooser  ModelChooser
	Limits   Limits
	Log      *slog.Logger
	// Mount, when set, adds more routes (e.g. the canary admin API) with
	// the same guards: public routes get rate limit, shedding and the
	// deadline; admin routes get the key check first.
	Mount func(e *echo.Echo, public, admin []echo.MiddlewareFunc)
}

type api struct {
	Deps
	uploads uploadBuffers
}

// Register adds the gateway's routes to e.
func Register(e *echo.Echo, d Deps) {
	if d.Chooser == nil {
		d.Chooser = AsRequested{}
	}
	if d.Limits.MaxUpload <= 0 {
		d.Limits.MaxUpload = 10 << 20
	}
	if d.Limits.RequestTimeout <= 0 {
		d.Limits.RequestTimeout = 10 * time.Second
	}
	if d.Limits.MaxInFlight <= 0 {
		d.Limits.MaxInFlight = 64
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	e.IPExtractor = d.ClientIP
	if e.IPExtractor == nil {
		e.IPExtractor = echo.ExtractIPDirect()
	}
	a := &api{Deps: d}
	shed := guard.NewConcurrency(d.Limits.MaxInFlight, d.Limits.QueueWait).Middleware()
	deadline := withDeadline(d.Limits.RequestTimeout)
	publicRate := d.Limits.Rate
	publicRate.ByKey = false
	adminRate := d.Limits.AdminRate
	adminRate.ByKey = true
	public := []echo.MiddlewareFunc{guard.RateLimit(publicRate), shed, deadline}
	admin := []echo.MiddlewareFunc{d.Keys.Middleware(), guard.RateLimit(adminRate), shed, deadline}

	e.POST(RouteSearch, a.search, append([]echo.MiddlewareFunc{public[0], a.overrideNeedsKey}, public[1:]...)...)
	e.GET(RouteModels, a.models, public...)
	e.GET(RouteProductImage, a.productImage, public...)
	e.POST(RouteProducts, a.createProduct, admin...)
	e.PUT(RouteProduct, a.updateProduct, admin...)
	e.DELETE(RouteProduct, a.deleteProduct, admin...)
	e.GET(RouteProduct, a.getProduct, admin...)
	e.GET(RouteOpenAPI, func(c echo.Context) error {
		return c.Blob(http.StatusOK, "application/json", OpenAPI)
	})
	web.Register(e)
	if d.Mount != nil {
		d.Mount(e, public, admin)
	}
}

// overrideNeedsKey lets a search force an arm (HeaderModelOverride) only
// with a valid admin key: without one it is refused with 403
// model_override_forbidden, so no shopper picks the canary. A wrong key
// counts against the client's failed-key budget like on the admin routes.
func (a *api) overrideNeedsKey(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if strings.TrimSpace(c.Request().Header.Get(HeaderModelOverride)) == "" {
			return next(c)
		}
		if err := a.Keys.Check(c); err != nil {
			if ae, ok := apierror.As(err); ok && ae.Status == http.StatusTooManyRequests {
				return err
			}
			c.Response().Header().Del("WWW-Authenticate")
			return apierror.New(http.StatusForbidden, CodeOverrideForbidden,
				"the %s header forces a model and needs an Authorization: Bearer <admin key> header", HeaderModelOverride)
		}
		return next(c)
	}
}

// withDeadline gives the request its overall deadline.
func withDeadline(d time.Duration) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			ctx, cancel := context.WithTimeout(c.Request().Context(), d)
			defer cancel()
			c.SetRequest(c.Request().WithContext(ctx))
			return next(c)
		}
	}
}

func (a *api) search(c echo.Context) error {
	start := time.Now()
	tm := &pipeline.Timings{}
	ctx := pipeline.WithTimings(c.Request().Context(), tm)
	defer func() { c.Response().Header().Set("Server-Timing", tm.Header(time.Since(start))) }()
	in, err := parseSearch(c.Request(), a.Limits.MaxUpload, &a.uploads)
	defer in.release() // after the answer: nothing reads the upload then but holders of Query.ImageHold
	if err != nil {
		return err
	}
	in.Query.Model = a.Chooser.Choose(c.Request(), in.Query.Model)
	var res pipeline.Result
	switch {
	case in.SKU != "":
		res, err = a.Pipeline.MoreLikeThis(ctx, in.SKU, in.Query)
	default:
		if in.ImageURL != "" {
			t0 := time.Now()
			f, ferr := a.Fetcher.Fetch(ctx, in.ImageURL)
			pipeline.Track(ctx, "fetch", t0)
			if ferr != nil {
				return ferr
			}
			in.Image = f.Body
		}
		res, err = a.Pipeline.SearchImage(ctx, in.Image, in.Query)
	}
	if err != nil {
		return err
	}
	out := gatewayv1.SearchResponse{Model: res.Model, Results: make([]gatewayv1.Hit, 0, len(res.Hits))}
	for _, h := range res.Hits {
		md := map[string]any(h.Payload)
		if md == nil {
			md = map[string]any{}
		}
		out.Results = append(out.Results, gatewayv1.Hit{SKU: h.SKU, Score: h.Score, Metadata: md})
	}
	c.Response().Header().Set("Server-Timing", tm.Header(time.Since(start)))
	return c.JSON(http.StatusOK, out)
}

func (a *api) models(c echo.Context) error {
	list, err := a.Pipeline.Models(c.Request().Context())
	if err != nil {
		return err
	}
	out := gatewayv1.ModelList{Models: make([]gatewayv1.ModelInfo, 0, len(list))}
	for _, m := range list {
		out.Models = append(out.Models, gatewayv1.ModelInfo{ID: m.ID, Version: m.Version, Dim: m.Dim, Default: m.Default})
	}
	return c.JSON(http.StatusOK, out)
}

func (a *api) productImage(c echo.Context) error {
	sku := c.Param("sku")
	if err := checkSKU(sku); err != nil {
		return err
	}
	pt, err := a.Pipeline.Get(c.Request().Context(), sku, "")
	if err != nil {
		return err
	}
	ref, _ := pt.Payload["image_url"].(string)
	if ref == "" {
		ref, _ = pt.Payload["image"].(string)
	}
	body, ct, err := a.Images.Open(c.Request().Context(), ref)
	if err != nil {
		if e, ok := apierror.As(err); ok && e.Status < 500 && e.Status != http.StatusNotFound {
			// A catalog image URL that fails to fetch is not the shopper's fault.
			return apierror.Wrap(err, http.StatusNotFound, apierror.CodeNotFound, "product image is not available")
		}
		return err
	}
	h := c.Response().Header()
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'")
	return c.Blob(http.StatusOK, ct, body)
}
