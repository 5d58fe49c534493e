package canary

import (
	"context"
	"fmt"
	"net/http"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
)

// SpaceReport is one vector space of the catalog.
type SpaceReport struct {
	Role       string `json:"role"` // stable, canary or other
	Model      string `json:"model"`
	Collection string `json:"collection"`
	Dim        int    `json:"dim"`
	Count      int64  `json:"count"`
}

// Report is the rollout as GET /v1/canary and the CLI show it.
type Report struct {
	State
	Share      float64 `json:"share"`
	ShadowRate float64 `json:"shadow_rate"`
	// Spaces are the catalog's collections with their product counts.
	Spaces []SpaceReport `json:"spaces"`
	// BackfillProgress is canary count / stable count (0..1, capped), the
	// backfill's progress as far as search can tell.
	BackfillProgress float64 `json:"backfill_progress"`
	// Models and Shadow are this replica's figures since it started.
	Models []ModelReport `json:"models"`
	Shadow ShadowReport  `json:"shadow"`
	// Ops are the changes the call made (empty: it was already done).
	Ops []Op `json:"ops"`
}

// Report describes the rollout, reading search fresh.
func (r *Router) Report(ctx context.Context) (Report, error) {
	st, err := r.State(ctx, true)
	if err != nil {
		return Report{}, searchErr(err, "reading the aliases")
	}
	return r.report(ctx, st, nil)
}

func (r *Router) report(ctx context.Context, st State, ops []Op) (Report, error) {
	rep := Report{State: st, Share: r.cfg.Share, ShadowRate: r.cfg.ShadowRate, Ops: ops, Spaces: []SpaceReport{}}
	if rep.Ops == nil {
		rep.Ops = []Op{}
	}
	colls, err := r.spaces.Collections(ctx)
	if err != nil {
		return Report{}, searchErr(err, "listing collections")
	}
	var stable, canary int64
	for _, c := range colls {
		if c.Catalog != st.Catalog {
			continue
		}
		role := "other"
		switch c.Name {
		case st.StableCollection:
			role, stable = "stable", c.Count
		case st.CanaryCollection:
			role, canary = "canary", c.Count
		}
		rep.Spaces = append(rep.Spaces, SpaceReport{Role: role, Model: c.Model, Collection: c.Name, Dim: c.Dim, Count: c.Count})
	}
	if st.Active() && stable > 0 {
		rep.BackfillProgress = min(1, float64(canary)/float64(stable))
	}
	rep.Models, rep.Shadow = r.metrics.Report()
	if rep.Models == nil {
		rep.Models = []ModelReport{}
	}
	return rep, nil
}

func searchErr(err error, what string) error {
	if _, ok := apierror.As(err); ok {
		return err
	}
	return apierror.Wrap(err, http.StatusServiceUnavailable, apierror.CodeUnavailable, "search: %s failed", what).WithRetryAfter(1)
}

// apply runs ops in order against search and logs each.
func (r *Router) apply(ctx context.Context, action string, ops []Op) error {
	for _, op := range ops {
		var err error
		switch op.Kind {
		case OpCreateCollection:
			_, err = r.spaces.CreateCollection(ctx, searchv1.CreateCollectionRequest{Catalog: r.cfg.Catalog, Model: op.Model, Dim: op.Dim})
		case OpSwitchAlias:
			_, err = r.spaces.SwitchAlias(ctx, op.Alias, op.Collection)
		case OpDeleteAlias:
			err = r.spaces.DeleteAlias(ctx, op.Alias)
		case OpDropCollection:
			err = r.spaces.DropCollection(ctx, op.Collection)
		default:
			err = fmt.Errorf("unknown op %q", op.Kind)
		}
		if err != nil {
			r.log.ErrorContext(ctx, "canary step failed", "action", action, "op", op.Kind, "alias", op.Alias, "collection", op.Collection, "err", err)
			return searchErr(err, string(op.Kind))
		}
		r.log.InfoContext(ctx, "canary step", "action", action, "op", op.Kind, "alias", op.Alias, "collection", op.Collection)
	}
	return nil
}

// transition reads the state fresh, plans, applies and reports.
func (r *Router) transition(ctx context.Context, action string, plan func(State) ([]Op, error)) (Report, error) {
	st, err := r.State(ctx, true)
	if err != nil {
		return Report{}, searchErr(err, "reading the aliases")
	}
	ops, err := plan(st)
	if err != nil {
		r.log.WarnContext(ctx, "canary action refused", "action", action, "phase", st.Phase, "stable", st.Stable, "canary", st.Canary, "err", err)
		return Report{}, err
	}
	if err := r.apply(ctx, action, ops); err != nil {
		return Report{}, err
	}
	if st, err = r.State(ctx, true); err != nil {
		return Report{}, searchErr(err, "reading the aliases")
	}
	r.log.InfoContext(ctx, "canary "+action, "changed", len(ops) > 0, "phase", st.Phase, "stable", st.Stable, "canary", st.Canary)
	return r.report(ctx, st, ops)
}

// Start begins rolling out model (empty: the configured canary model): its
// space is created and every product write goes to it too, while a
// backfill job fills it. Queries reach it only by override until Serve.
func (r *Router) Start(ctx context.Context, model string) (Report, error) {
	if model == "" {
		model = r.cfg.Model
	}
	if model == "" {
		return Report{}, apierror.BadRequest(apierror.CodeInvalidArgument, "name the model to roll out (or set CANARY_MODEL)")
	}
	spec, err := r.spec(ctx, model)
	if err != nil {
		return Report{}, err
	}
	return r.transition(ctx, "start", func(st State) ([]Op, error) { return PlanStart(st, model, spec.Dim) })
}

// Serve sends the canary its share of traffic; run it once the backfill
// has completed.
func (r *Router) Serve(ctx context.Context) (Report, error) {
	return r.transition(ctx, "serve", PlanServe)
}

// Promote makes the canary the stable model (see PlanPromote).
func (r *Router) Promote(ctx context.Context, model string, force bool) (Report, error) {
	return r.transition(ctx, "promote", func(st State) ([]Op, error) {
		c, err := r.counts(ctx, st)
		if err != nil {
			return nil, err
		}
		return PlanPromote(st, model, force, c)
	})
}

// Rollback stops canary traffic and dual writes; drop deletes its space.
func (r *Router) Rollback(ctx context.Context, drop bool) (Report, error) {
	return r.transition(ctx, "rollback", func(st State) ([]Op, error) { return PlanRollback(st, drop), nil })
}

func (r *Router) counts(ctx context.Context, st State) (Counts, error) {
	var c Counts
	if !st.Active() {
		return c, nil
	}
	colls, err := r.spaces.Collections(ctx)
	if err != nil {
		return c, searchErr(err, "listing collections")
	}
	for _, col := range colls {
		switch col.Name {
		case st.StableCollection:
			c.Stable = col.Count
		case st.CanaryCollection:
			c.Canary = col.Count
		}
	}
	return c, nil
}
