package canary

import (
	"net/http"
	"slices"
	"strings"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
)

// Error codes of the canary API and the split.
const (
	CodeNoCanary         = "no_canary"
	CodeNoStable         = "no_stable_space"
	CodeCanaryActive     = "canary_active"
	CodeCanaryIsStable   = "canary_is_stable"
	CodeCanaryNotLive    = "canary_not_live"
	CodeCanaryIncomplete = "canary_incomplete"
	CodeModelNotLive     = "model_not_live"
	CodeInvalidOverride  = "invalid_model_override"
	CodeModelNotServed   = "model_not_served"
)

// Phase is where a canary rollout stands.
type Phase string

// Phases.
const (
	// PhaseNone: only the stable space serves; writes go to it alone.
	PhaseNone Phase = "none"
	// PhaseBackfill: the canary space exists and receives every write (dual
	// write) while a backfill job fills it; queries reach it only by override.
	PhaseBackfill Phase = "backfill"
	// PhaseLive: the canary answers its share of queries; dual writes go on.
	PhaseLive Phase = "live"
)

// Names are the aliases of a catalog's rollout.
type Names struct{ Catalog string }

// Stable is the catalog alias: the live space everyone queries.
func (n Names) Stable() string { return n.Catalog }

// Live marks a canary answering its share of traffic.
func (n Names) Live() string { return n.Catalog + "-canary" }

// Backfill marks a canary space being filled (dual writes, no traffic).
func (n Names) Backfill() string { return n.Catalog + "-canary-backfill" }

// State is the rollout as search's aliases describe it.
type State struct {
	Catalog          string `json:"catalog"`
	Stable           string `json:"stable_model,omitempty"`
	StableCollection string `json:"stable_collection,omitempty"`
	Canary           string `json:"canary_model,omitempty"`
	CanaryCollection string `json:"canary_collection,omitempty"`
	Phase            Phase  `json:"phase"`
	// CanaryAliases are the canary marker aliases that exist (normally one;
	// leftovers of an interrupted step are cleaned up by the next step).
	CanaryAliases []string `json:"canary_aliases,omitempty"`
}

// Active reports whether a canary space receives writes.
func (s State) Active() bool { return s.Phase != PhaseNone }

func modelOf(a searchv1.AliasInfo) string {
	if a.Model != "" {
		return a.Model
	}
	_, m, _ := strings.Cut(a.Collection, "__")
	return m
}

// StateFromAliases reads the rollout of catalog from search's alias list.
func StateFromAliases(catalog string, aliases []searchv1.AliasInfo) State {
	n := Names{catalog}
	st := State{Catalog: catalog, Phase: PhaseNone}
	byName := map[string]searchv1.AliasInfo{}
	for _, a := range aliases {
		byName[a.Alias] = a
	}
	if a, ok := byName[n.Stable()]; ok {
		st.Stable, st.StableCollection = modelOf(a), a.Collection
	}
	for _, name := range []string{n.Live(), n.Backfill()} {
		if _, ok := byName[name]; ok {
			st.CanaryAliases = append(st.CanaryAliases, name)
		}
	}
	var marker searchv1.AliasInfo
	switch {
	case slices.Contains(st.CanaryAliases, n.Live()):
		marker, st.Phase = byName[n.Live()], PhaseLive
	case slices.Contains(st.CanaryAliases, n.Backfill()):
		marker, st.Phase = byName[n.Backfill()], PhaseBackfill
	default:
		return st
	}
	if marker.Collection == st.StableCollection {
		// A promote that switched the catalog alias but did not get to
		// remove the marker: there is no canary, only a leftover.
		st.Phase = PhaseNone
		return st
	}
	st.Canary, st.CanaryCollection = modelOf(marker), marker.Collection
	return st
}

// Decision is the arm and model a query runs on.
type Decision struct {
	Arm   Arm
	Model string
	// Reason: "override", "requested", "split" or "no_canary".
	Reason string
}

// Decide picks the arm of a query. override is the Lookalike-Model header,
// requested the model the query named (both may be empty), key the client
// key and share the canary share. An explicit model that is neither the
// stable nor the canary model is refused: its space does not serve.
func Decide(st State, share float64, key, override, requested string) (Decision, error) {
	override = strings.ToLower(strings.TrimSpace(override))
	if override != "" {
		d := Decision{Reason: "override"}
		switch {
		case override == "stable" || (st.Stable != "" && override == st.Stable):
			d.Arm, d.Model = Stable, st.Stable
		case override == "canary" || (st.Canary != "" && override == st.Canary):
			if st.Canary == "" {
				return Decision{}, apierror.New(http.StatusConflict, CodeNoCanary, "%s: canary requested but no canary model is rolling out", HeaderOverride)
			}
			d.Arm, d.Model = Canary, st.Canary
		default:
			return Decision{}, apierror.BadRequest(CodeInvalidOverride, "%s must be \"stable\", \"canary\" or one of their model ids", HeaderOverride)
		}
		if requested != "" && d.Model != "" && requested != d.Model {
			return Decision{}, apierror.BadRequest(apierror.CodeInvalidArgument, "model %q contradicts %s: %s", requested, HeaderOverride, override)
		}
		return d, nil
	}
	if requested != "" {
		switch {
		case st.Stable == "" && st.Canary == "":
			// No catalog space yet: nothing to route, search decides.
			return Decision{Arm: Stable, Model: requested, Reason: "requested"}, nil
		case requested == st.Stable:
			return Decision{Arm: Stable, Model: requested, Reason: "requested"}, nil
		case requested == st.Canary:
			return Decision{Arm: Canary, Model: requested, Reason: "requested"}, nil
		}
		return Decision{}, apierror.BadRequest(CodeModelNotLive, "model %q does not serve catalog %q (stable %q, canary %q)", requested, st.Catalog, st.Stable, st.Canary)
	}
	if st.Phase != PhaseLive {
		return Decision{Arm: Stable, Model: st.Stable, Reason: "no_canary"}, nil
	}
	if InCanary(st.Canary, key, share) {
		return Decision{Arm: Canary, Model: st.Canary, Reason: "split"}, nil
	}
	return Decision{Arm: Stable, Model: st.Stable, Reason: "split"}, nil
}

// OpKind is one change to search.
type OpKind string

// Op kinds.
const (
	OpCreateCollection OpKind = "create_collection"
	OpSwitchAlias      OpKind = "switch_alias"
	OpDeleteAlias      OpKind = "delete_alias"
	OpDropCollection   OpKind = "drop_collection"
)

// Op is one step of a transition, applied in order. Every op is idempotent
// on its own, so a transition interrupted half way is finished by running
// it again.
type Op struct {
	Kind       OpKind `json:"op"`
	Alias      string `json:"alias,omitempty"`
	Collection string `json:"collection,omitempty"`
	Model      string `json:"model,omitempty"`
	Dim        int    `json:"dim,omitempty"`
}

// PlanStart begins a rollout of model (dim): create its space and mark it
// as being backfilled. Starting the model already rolling out does nothing.
func PlanStart(st State, model string, dim int) ([]Op, error) {
	n := Names{st.Catalog}
	switch {
	case !searchv1.ValidName(model):
		return nil, apierror.BadRequest(apierror.CodeInvalidArgument, "model %q is not a valid model id", model)
	case dim <= 0:
		return nil, apierror.BadRequest(apierror.CodeInvalidArgument, "model %q has no dimension", model)
	case st.Stable == "":
		return nil, apierror.New(http.StatusConflict, CodeNoStable, "catalog %q has no stable space yet: index it first", st.Catalog)
	case model == st.Stable:
		return nil, apierror.New(http.StatusConflict, CodeCanaryIsStable, "model %q is already the stable model", model)
	case st.Active() && st.Canary == model:
		return nil, nil
	case st.Active():
		return nil, apierror.New(http.StatusConflict, CodeCanaryActive, "model %q is already rolling out: promote or roll it back first", st.Canary)
	}
	coll := searchv1.CollectionName(st.Catalog, model)
	ops := []Op{{Kind: OpCreateCollection, Collection: coll, Model: model, Dim: dim}}
	for _, a := range st.CanaryAliases { // leftovers
		ops = append(ops, Op{Kind: OpDeleteAlias, Alias: a})
	}
	return append(ops, Op{Kind: OpSwitchAlias, Alias: n.Backfill(), Collection: coll}), nil
}

// PlanServe sends the canary its share of traffic (after the backfill).
func PlanServe(st State) ([]Op, error) {
	n := Names{st.Catalog}
	switch st.Phase {
	case PhaseNone:
		return nil, apierror.New(http.StatusConflict, CodeNoCanary, "no canary is rolling out")
	case PhaseLive:
		if slices.Contains(st.CanaryAliases, n.Backfill()) {
			return []Op{{Kind: OpDeleteAlias, Alias: n.Backfill()}}, nil
		}
		return nil, nil
	}
	return []Op{
		{Kind: OpSwitchAlias, Alias: n.Live(), Collection: st.CanaryCollection},
		{Kind: OpDeleteAlias, Alias: n.Backfill()},
	}, nil
}

// Counts are the points in each space, for the promote guard.
type Counts struct{ Stable, Canary int64 }

// PlanPromote makes the canary the stable model: one atomic switch of the
// catalog alias, then the markers go. expect, when set, must name the
// canary (or the stable model, after a promote: then nothing is done).
// Without force the canary must be live and hold at least as many products
// as the stable space.
func PlanPromote(st State, expect string, force bool, c Counts) ([]Op, error) {
	n := Names{st.Catalog}
	if !st.Active() {
		if expect != "" && expect == st.Stable {
			return cleanup(st), nil // promoted already
		}
		return nil, apierror.New(http.StatusConflict, CodeNoCanary, "no canary is rolling out")
	}
	if expect != "" && expect != st.Canary {
		return nil, apierror.New(http.StatusConflict, apierror.CodeConflict, "the canary is %q, not %q", st.Canary, expect)
	}
	if !force && st.Phase != PhaseLive {
		return nil, apierror.New(http.StatusConflict, CodeCanaryNotLive, "canary %q is still in phase %s: serve it first (or force)", st.Canary, st.Phase)
	}
	if !force && c.Canary < c.Stable {
		return nil, apierror.New(http.StatusConflict, CodeCanaryIncomplete, "canary space holds %d products, stable %d: finish the backfill (or force)", c.Canary, c.Stable)
	}
	ops := []Op{{Kind: OpSwitchAlias, Alias: n.Stable(), Collection: st.CanaryCollection}}
	return append(ops, cleanup(st)...), nil
}

// PlanRollback stops canary traffic and dual writes; drop also deletes the
// canary's space. Rolling back with no canary does nothing.
func PlanRollback(st State, drop bool) []Op {
	ops := cleanup(st)
	if drop && st.Active() && st.CanaryCollection != "" && st.CanaryCollection != st.StableCollection {
		ops = append(ops, Op{Kind: OpDropCollection, Collection: st.CanaryCollection})
	}
	return ops
}

func cleanup(st State) []Op {
	var ops []Op
	for _, a := range st.CanaryAliases {
		ops = append(ops, Op{Kind: OpDeleteAlias, Alias: a})
	}
	return ops
}
