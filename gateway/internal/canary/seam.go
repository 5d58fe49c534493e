package canary

import (
	"context"
	"net/http"
	"sync"

	"github.com/labstack/echo/v4"

	"github.com/lookalike-dev/lookalike/gateway/internal/pipeline"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
)

// The gateway's HTTP API plugs the router in through three seams, so its
// handlers know nothing of rollouts: the router is the API's ModelChooser
// (Choose picks the arm of a search), its Backend (queries run on the arm's
// embedder and space, product writes go to every live space) and its Mount
// hook (the admin routes, and the middleware below that carries the
// decision from Choose to the query and adds the response headers).

type slotKey struct{}

// slot carries one request's arm decision from Choose to the query.
type slot struct {
	mu      sync.Mutex
	decided bool
	st      State
	d       Decision
	err     error
	model   string // the model that answered
}

func slotFrom(ctx context.Context) *slot {
	s, _ := ctx.Value(slotKey{}).(*slot)
	return s
}

// Middleware gives every request a decision slot and, on a search that
// was routed, adds the Lookalike-Arm and Lookalike-Model-Id headers.
func (r *Router) Middleware() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			s := &slot{}
			c.SetRequest(c.Request().WithContext(context.WithValue(c.Request().Context(), slotKey{}, s)))
			c.Response().Before(func() {
				s.mu.Lock()
				defer s.mu.Unlock()
				if !s.decided || s.err != nil {
					return
				}
				h := c.Response().Header()
				h.Set(HeaderArm, s.d.Arm.String())
				if s.model != "" {
					h.Set(HeaderModel, s.model)
				}
			})
			return next(c)
		}
	}
}

// Mount registers the admin routes behind admin and the middleware; it is
// the gateway API's Deps.Mount.
func (r *Router) Mount(e *echo.Echo, _, admin []echo.MiddlewareFunc) {
	e.Use(r.Middleware())
	r.Register(e, admin...)
}

// Choose decides the arm of a search (the API's ModelChooser). A refusal
// (a bad override, a model that does not serve) is kept in the request's
// slot and returned by the query that follows.
func (r *Router) Choose(req *http.Request, requested string) string {
	st, d, err := r.decide(req.Context(), req, requested)
	if s := slotFrom(req.Context()); s != nil {
		s.mu.Lock()
		s.decided, s.st, s.d, s.err = true, st, d, err
		s.mu.Unlock()
	}
	if err != nil {
		return requested
	}
	return d.Model
}

// decided returns the decision Choose made for this request, or, without
// one (a caller that did not go through Choose), the arm of q's model.
func (r *Router) decided(ctx context.Context, model string) (*slot, State, Decision, error) {
	s := slotFrom(ctx)
	if s != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.decided {
			return s, s.st, s.d, s.err
		}
	}
	st, _ := r.State(ctx, false)
	d := Decision{Arm: Stable, Model: model, Reason: "requested"}
	if model == "" {
		d.Model, d.Reason = st.Stable, "no_canary"
	} else if model == st.Canary {
		d.Arm = Canary
	}
	return s, st, d, nil
}

func (r *Router) query(ctx context.Context, q Query) (pipeline.Result, error) {
	s, st, d, err := r.decided(ctx, q.Model)
	if err != nil {
		return pipeline.Result{}, err
	}
	res, err := r.answer(ctx, st, d, q)
	if s != nil {
		s.mu.Lock()
		s.model = res.Model
		s.mu.Unlock()
	}
	return res, err
}

// SearchImage runs an image query on the arm Choose picked.
func (r *Router) SearchImage(ctx context.Context, image []byte, q pipeline.Query) (pipeline.Result, error) {
	return r.query(ctx, Query{Image: image, Query: q})
}

// MoreLikeThis runs a "more like this" query on the arm Choose picked.
func (r *Router) MoreLikeThis(ctx context.Context, sku string, q pipeline.Query) (pipeline.Result, error) {
	return r.query(ctx, Query{SKU: sku, Query: q})
}

// Models lists the models of every embed deployment (stable first).
func (r *Router) Models(ctx context.Context) ([]embedv1.ModelSpec, error) {
	var out []embedv1.ModelSpec
	seen := map[string]bool{}
	var firstErr error
	for i, b := range r.backends {
		list, err := b.Models(ctx)
		if err != nil {
			if i == 0 {
				return nil, err // the stable embedder decides readiness
			}
			firstErr = cmpErr(firstErr, err)
			continue
		}
		for _, m := range list {
			if !seen[m.ID] {
				seen[m.ID] = true
				if i > 0 {
					m.Default = false
				}
				out = append(out, m)
			}
		}
	}
	if len(out) == 0 && firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

// Get returns a stored product from model's space (empty: the catalog
// alias's).
func (r *Router) Get(ctx context.Context, sku, model string) (searchv1.Point, error) {
	return r.backends[0].Get(ctx, sku, model)
}
