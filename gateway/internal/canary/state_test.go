package canary

import (
	"reflect"
	"testing"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
)

const (
	modelA = "mobilenetv2-int8-v1"
	modelB = "mobilenetv2-int8-logits-v1"
	collA  = "products__" + modelA
	collB  = "products__" + modelB
)

func alias(name, coll string) searchv1.AliasInfo {
	return searchv1.AliasInfo{Alias: name, Collection: coll}
}

func TestStateFromAliases(t *testing.T) {
	tests := []struct {
		name    string
		aliases []searchv1.AliasInfo
		want    State
	}{
		{"empty catalog", nil, State{Catalog: "products", Phase: PhaseNone}},
		{"stable only", []searchv1.AliasInfo{alias("products", collA)},
			State{Catalog: "products", Stable: modelA, StableCollection: collA, Phase: PhaseNone}},
		{"model from the alias info wins", []searchv1.AliasInfo{{Alias: "products", Collection: "products__x", Model: "y"}},
			State{Catalog: "products", Stable: "y", StableCollection: "products__x", Phase: PhaseNone}},
		{"backfill", []searchv1.AliasInfo{alias("products", collA), alias("products-canary-backfill", collB)},
			State{Catalog: "products", Stable: modelA, StableCollection: collA, Canary: modelB, CanaryCollection: collB,
				Phase: PhaseBackfill, CanaryAliases: []string{"products-canary-backfill"}}},
		{"live", []searchv1.AliasInfo{alias("products-canary", collB), alias("products", collA)},
			State{Catalog: "products", Stable: modelA, StableCollection: collA, Canary: modelB, CanaryCollection: collB,
				Phase: PhaseLive, CanaryAliases: []string{"products-canary"}}},
		{"live wins over a leftover backfill marker", []searchv1.AliasInfo{alias("products", collA), alias("products-canary", collB), alias("products-canary-backfill", collB)},
			State{Catalog: "products", Stable: modelA, StableCollection: collA, Canary: modelB, CanaryCollection: collB,
				Phase: PhaseLive, CanaryAliases: []string{"products-canary", "products-canary-backfill"}}},
		{"interrupted promote: marker on the stable space is a leftover", []searchv1.AliasInfo{alias("products", collB), alias("products-canary", collB)},
			State{Catalog: "products", Stable: modelB, StableCollection: collB, Phase: PhaseNone, CanaryAliases: []string{"products-canary"}}},
		{"other catalogs ignored", []searchv1.AliasInfo{alias("shoes", "shoes__m"), alias("shoes-canary", "shoes__n"), alias("products", collA)},
			State{Catalog: "products", Stable: modelA, StableCollection: collA, Phase: PhaseNone}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := StateFromAliases("products", tc.aliases); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

var (
	stNone     = State{Catalog: "products", Stable: modelA, StableCollection: collA, Phase: PhaseNone}
	stEmpty    = State{Catalog: "products", Phase: PhaseNone}
	stBackfill = State{Catalog: "products", Stable: modelA, StableCollection: collA, Canary: modelB, CanaryCollection: collB, Phase: PhaseBackfill, CanaryAliases: []string{"products-canary-backfill"}}
	stLive     = State{Catalog: "products", Stable: modelA, StableCollection: collA, Canary: modelB, CanaryCollection: collB, Phase: PhaseLive, CanaryAliases: []string{"products-canary"}}
	stLeftover = State{Catalog: "products", Stable: modelB, StableCollection: collB, Phase: PhaseNone, CanaryAliases: []string{"products-canary"}}
)

// keyIn and keyOut are client keys inside and outside a 10% canary of modelB.
func splitKeys(t *testing.T) (in, out string) {
	t.Helper()
	for i := 0; in == "" || out == ""; i++ {
		k := "id:" + string(rune('a'+i%26)) + string(rune('a'+i/26%26))
		if InCanary(modelB, k, 0.1) {
			in = k
		} else {
			out = k
		}
	}
	return in, out
}

func TestDecide(t *testing.T) {
	in, out := splitKeys(t)
	tests := []struct {
		name                string
		st                  State
		key, override, reqd string
		want                Decision
		code                string
	}{
		{"no canary: stable", stNone, in, "", "", Decision{Stable, modelA, "no_canary"}, ""},
		{"empty catalog: embed default", stEmpty, in, "", "", Decision{Stable, "", "no_canary"}, ""},
		{"backfill: no split traffic", stBackfill, in, "", "", Decision{Stable, modelA, "no_canary"}, ""},
		{"live, client in share", stLive, in, "", "", Decision{Canary, modelB, "split"}, ""},
		{"live, client outside share", stLive, out, "", "", Decision{Stable, modelA, "split"}, ""},
		{"override canary", stLive, out, "canary", "", Decision{Canary, modelB, "override"}, ""},
		{"override is case-insensitive", stLive, out, " Canary ", "", Decision{Canary, modelB, "override"}, ""},
		{"override stable", stLive, in, "stable", "", Decision{Stable, modelA, "override"}, ""},
		{"override by model id", stLive, out, modelB, "", Decision{Canary, modelB, "override"}, ""},
		{"override canary during backfill", stBackfill, out, "canary", "", Decision{Canary, modelB, "override"}, ""},
		{"override canary without one", stNone, out, "canary", "", Decision{}, CodeNoCanary},
		{"override garbage", stLive, out, "newest", "", Decision{}, CodeInvalidOverride},
		{"override contradicts model", stLive, out, "stable", modelB, Decision{}, apierror.CodeInvalidArgument},
		{"override agrees with model", stLive, out, "canary", modelB, Decision{Canary, modelB, "override"}, ""},
		{"requested stable model", stLive, in, "", modelA, Decision{Stable, modelA, "requested"}, ""},
		{"requested canary model", stLive, out, "", modelB, Decision{Canary, modelB, "requested"}, ""},
		{"requested model that is not live", stNone, out, "", modelB, Decision{}, CodeModelNotLive},
		{"requested model, no space known", stEmpty, out, "", modelB, Decision{Stable, modelB, "requested"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decide(tc.st, 0.1, tc.key, tc.override, tc.reqd)
			if tc.code != "" {
				if apierror.CodeOf(err) != tc.code {
					t.Fatalf("err = %v, want code %s", err, tc.code)
				}
				if e, _ := apierror.As(err); e.Status/100 != 4 {
					t.Fatalf("status %d, want 4xx", e.Status)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Decide = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestPlans(t *testing.T) {
	start := func(model string, dim int) func(State) ([]Op, error) {
		return func(st State) ([]Op, error) { return PlanStart(st, model, dim) }
	}
	promote := func(expect string, force bool, c Counts) func(State) ([]Op, error) {
		return func(st State) ([]Op, error) { return PlanPromote(st, expect, force, c) }
	}
	rollback := func(drop bool) func(State) ([]Op, error) {
		return func(st State) ([]Op, error) { return PlanRollback(st, drop), nil }
	}
	full := Counts{Stable: 50, Canary: 50}
	tests := []struct {
		name string
		st   State
		plan func(State) ([]Op, error)
		want []Op
		code string
	}{
		{"start", stNone, start(modelB, 1000), []Op{
			{Kind: OpCreateCollection, Collection: collB, Model: modelB, Dim: 1000},
			{Kind: OpSwitchAlias, Alias: "products-canary-backfill", Collection: collB}}, ""},
		{"start again is a no-op", stBackfill, start(modelB, 1000), nil, ""},
		{"start while live is a no-op", stLive, start(modelB, 1000), nil, ""},
		{"start another model while one rolls out", stLive, start("other-v2", 512), nil, CodeCanaryActive},
		{"start the stable model", stNone, start(modelA, 1280), nil, CodeCanaryIsStable},
		{"start on an empty catalog", stEmpty, start(modelB, 1000), nil, CodeNoStable},
		{"start with a bad id", stNone, start("Bad/ID", 1000), nil, apierror.CodeInvalidArgument},
		{"start cleans leftovers", stLeftover, start(modelA, 1280), []Op{
			{Kind: OpCreateCollection, Collection: collA, Model: modelA, Dim: 1280},
			{Kind: OpDeleteAlias, Alias: "products-canary"},
			{Kind: OpSwitchAlias, Alias: "products-canary-backfill", Collection: collA}}, ""},
		{"serve", stBackfill, PlanServe, []Op{
			{Kind: OpSwitchAlias, Alias: "products-canary", Collection: collB},
			{Kind: OpDeleteAlias, Alias: "products-canary-backfill"}}, ""},
		{"serve again is a no-op", stLive, PlanServe, nil, ""},
		{"serve without canary", stNone, PlanServe, nil, CodeNoCanary},
		{"promote", stLive, promote("", false, full), []Op{
			{Kind: OpSwitchAlias, Alias: "products", Collection: collB},
			{Kind: OpDeleteAlias, Alias: "products-canary"}}, ""},
		{"promote naming the canary", stLive, promote(modelB, false, full), []Op{
			{Kind: OpSwitchAlias, Alias: "products", Collection: collB},
			{Kind: OpDeleteAlias, Alias: "products-canary"}}, ""},
		{"promote naming another model", stLive, promote("other-v2", false, full), nil, apierror.CodeConflict},
		{"promote an incomplete canary", stLive, promote("", false, Counts{Stable: 50, Canary: 49}), nil, CodeCanaryIncomplete},
		{"force promotes an incomplete canary", stLive, promote("", true, Counts{Stable: 50, Canary: 49}), []Op{
			{Kind: OpSwitchAlias, Alias: "products", Collection: collB},
			{Kind: OpDeleteAlias, Alias: "products-canary"}}, ""},
		{"promote during backfill", stBackfill, promote("", false, full), nil, CodeCanaryNotLive},
		{"promote repeated after success", State{Catalog: "products", Stable: modelB, StableCollection: collB, Phase: PhaseNone}, promote(modelB, false, full), nil, ""},
		{"promote repeated finishes an interrupted one", stLeftover, promote(modelB, false, full), []Op{{Kind: OpDeleteAlias, Alias: "products-canary"}}, ""},
		{"promote without canary", stNone, promote("", false, full), nil, CodeNoCanary},
		{"rollback", stLive, rollback(false), []Op{{Kind: OpDeleteAlias, Alias: "products-canary"}}, ""},
		{"rollback and drop", stLive, rollback(true), []Op{
			{Kind: OpDeleteAlias, Alias: "products-canary"},
			{Kind: OpDropCollection, Collection: collB}}, ""},
		{"rollback during backfill", stBackfill, rollback(true), []Op{
			{Kind: OpDeleteAlias, Alias: "products-canary-backfill"},
			{Kind: OpDropCollection, Collection: collB}}, ""},
		{"rollback again is a no-op", stNone, rollback(true), nil, ""},
		{"rollback never drops the stable space", stLeftover, rollback(true), []Op{{Kind: OpDeleteAlias, Alias: "products-canary"}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.plan(tc.st)
			if tc.code != "" {
				if apierror.CodeOf(err) != tc.code {
					t.Fatalf("err = %v, want code %s", err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ops\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
