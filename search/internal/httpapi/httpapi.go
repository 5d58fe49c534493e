// Package httpapi serves the searchv1 routes on echo over a service.Service.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"

	"github.com/lookalike-dev/lookalike/search/internal/service"
	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
)

// API is the HTTP face of the service.
type API struct {
	svc *service.Service
}

// New serves svc.
func New(svc *service.Service) *API { return &API{svc: svc} }

// Register adds the searchv1 routes to e.
func (a *API) Register(e *echo.Echo) {
	e.POST(searchv1.RouteCollections, a.createCollection)
	e.GET(searchv1.RouteCollections, a.collections)
	e.GET(searchv1.RouteCollection, a.collection)
	e.DELETE(searchv1.RouteCollection, a.dropCollection)
	e.POST(searchv1.RoutePoints, catalogJSON(a.svc.Upsert))
	e.GET(searchv1.RoutePoint, a.get)
	e.DELETE(searchv1.RoutePoint, a.delete)
	e.GET(searchv1.RouteCount, a.count)
	e.POST(searchv1.RouteSearch, catalogJSON(a.svc.Search))
	e.POST(searchv1.RouteRecommend, catalogJSON(a.svc.Recommend))
	e.POST(searchv1.RouteDuplicates, catalogJSON(a.svc.Duplicates))
	e.GET(searchv1.RouteAliases, a.aliases)
	e.GET(searchv1.RouteAlias, a.alias)
	e.PUT(searchv1.RouteAlias, a.switchAlias)
	e.DELETE(searchv1.RouteAlias, a.deleteAlias)
}

// param reads a path parameter; echo leaves it escaped when it routed on
// the raw path (a SKU with "/" or "%" in it).
func param(c echo.Context, name string) (string, error) {
	v := c.Param(name)
	if c.Request().URL.RawPath == "" {
		return v, nil
	}
	u, err := url.PathUnescape(v)
	if err != nil {
		return "", apierror.BadRequest(apierror.CodeBadRequest, "path parameter %s is not escaped properly", name)
	}
	return u, nil
}

func decode(c echo.Context, v any) error {
	if err := json.NewDecoder(c.Request().Body).Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return apierror.BadRequest(apierror.CodeBadRequest, "request body is not valid JSON for this route: %v", err)
	}
	return nil
}

func (a *API) createCollection(c echo.Context) error {
	var r searchv1.CreateCollectionRequest
	if err := decode(c, &r); err != nil {
		return err
	}
	out, err := a.svc.CreateCollection(c.Request().Context(), r)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

func (a *API) collections(c echo.Context) error {
	out, err := a.svc.Collections(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

func (a *API) collection(c echo.Context) error {
	name, err := param(c, "collection")
	if err != nil {
		return err
	}
	out, err := a.svc.Collection(c.Request().Context(), name)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

func (a *API) dropCollection(c echo.Context) error {
	name, err := param(c, "collection")
	if err != nil {
		return err
	}
	if err := a.svc.DropCollection(c.Request().Context(), name); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (a *API) get(c echo.Context) error {
	cat, err := param(c, "catalog")
	if err != nil {
		return err
	}
	sku, err := param(c, "sku")
	if err != nil {
		return err
	}
	out, err := a.svc.Get(c.Request().Context(), cat, sku, c.QueryParam(searchv1.ParamModel))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

func (a *API) delete(c echo.Context) error {
	cat, err := param(c, "catalog")
	if err != nil {
		return err
	}
	sku, err := param(c, "sku")
	if err != nil {
		return err
	}
	if err := a.svc.Delete(c.Request().Context(), cat, sku, c.QueryParam(searchv1.ParamModel)); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (a *API) count(c echo.Context) error {
	cat, err := param(c, "catalog")
	if err != nil {
		return err
	}
	out, err := a.svc.Count(c.Request().Context(), cat, c.QueryParam(searchv1.ParamModel))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

func (a *API) aliases(c echo.Context) error {
	out, err := a.svc.Aliases(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

func (a *API) alias(c echo.Context) error {
	name, err := param(c, "alias")
	if err != nil {
		return err
	}
	out, err := a.svc.Alias(c.Request().Context(), name)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

func (a *API) switchAlias(c echo.Context) error {
	name, err := param(c, "alias")
	if err != nil {
		return err
	}
	var r searchv1.SwitchAliasRequest
	if err := decode(c, &r); err != nil {
		return err
	}
	out, err := a.svc.SwitchAlias(c.Request().Context(), name, r)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

func (a *API) deleteAlias(c echo.Context) error {
	name, err := param(c, "alias")
	if err != nil {
		return err
	}
	if err := a.svc.DeleteAlias(c.Request().Context(), name); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// catalogJSON serves a POST on a catalog route: the ":catalog" parameter and
// a JSON request body go to fn, and its answer is written as JSON.
func catalogJSON[Req, Resp any](fn func(context.Context, string, Req) (Resp, error)) echo.HandlerFunc {
	return func(c echo.Context) error {
		cat, err := param(c, "catalog")
		if err != nil {
			return err
		}
		var r Req
		if err := decode(c, &r); err != nil {
			return err
		}
		out, err := fn(c.Request().Context(), cat, r)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, out)
	}
}
