package canary

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/lookalike-dev/lookalike/shared/apierror"
)

// Admin routes (behind the admin key).
const (
	RouteCanary   = "/v1/canary"          // GET report; POST StartRequest
	RouteServe    = "/v1/canary/serve"    // POST: backfill done, send the share
	RoutePromote  = "/v1/canary/promote"  // POST PromoteRequest
	RouteRollback = "/v1/canary/rollback" // POST RollbackRequest
)

// StartRequest starts a rollout.
type StartRequest struct {
	// Model to roll out (empty: CANARY_MODEL).
	Model string `json:"model,omitempty"`
}

// PromoteRequest promotes the canary.
type PromoteRequest struct {
	// Model, when set, must be the canary (or, repeated after a promote,
	// the stable model: then nothing is done).
	Model string `json:"model,omitempty"`
	// Force promotes a canary that is not live or holds fewer products.
	Force bool `json:"force,omitempty"`
}

// RollbackRequest rolls the canary back.
type RollbackRequest struct {
	// Drop deletes the canary's space too.
	Drop bool `json:"drop,omitempty"`
}

// CodeInvalidJSON is the code of a body that does not parse.
const CodeInvalidJSON = "invalid_json"

// Register adds the admin routes to e behind mw (the admin key check).
func (r *Router) Register(e *echo.Echo, mw ...echo.MiddlewareFunc) {
	e.GET(RouteCanary, func(c echo.Context) error {
		rep, err := r.Report(c.Request().Context())
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, rep)
	}, mw...)
	e.POST(RouteCanary, func(c echo.Context) error {
		var in StartRequest
		if err := decode(c, &in); err != nil {
			return err
		}
		rep, err := r.Start(c.Request().Context(), in.Model)
		return answer(c, rep, err)
	}, mw...)
	e.POST(RouteServe, func(c echo.Context) error {
		var in struct{}
		if err := decode(c, &in); err != nil {
			return err
		}
		rep, err := r.Serve(c.Request().Context())
		return answer(c, rep, err)
	}, mw...)
	e.POST(RoutePromote, func(c echo.Context) error {
		var in PromoteRequest
		if err := decode(c, &in); err != nil {
			return err
		}
		rep, err := r.Promote(c.Request().Context(), in.Model, in.Force)
		return answer(c, rep, err)
	}, mw...)
	e.POST(RouteRollback, func(c echo.Context) error {
		var in RollbackRequest
		if err := decode(c, &in); err != nil {
			return err
		}
		rep, err := r.Rollback(c.Request().Context(), in.Drop)
		return answer(c, rep, err)
	}, mw...)
}

func answer(c echo.Context, rep Report, err error) error {
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, rep)
}

// decode reads an optional JSON body strictly (an empty body is {}).
func decode(c echo.Context, v any) error {
	b, err := io.ReadAll(io.LimitReader(c.Request().Body, 64<<10))
	if err != nil {
		return apierror.Wrap(err, http.StatusBadRequest, apierror.CodeBadRequest, "reading the body")
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return apierror.Wrap(err, http.StatusBadRequest, CodeInvalidJSON, "the body is not a valid request: %v", err)
	}
	return nil
}
