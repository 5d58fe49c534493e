package rules_test

import (
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/lookalike-dev/lookalike/manifests/internal/render"
	"github.com/lookalike-dev/lookalike/manifests/internal/rules"
)

var externalSecrets = []string{"lookalike-admin-key", "qdrant-api-key"}

var (
	renderMu sync.Mutex
	rendered = map[string][]render.Object{}
)

// renderVariant renders v once per test run and hands each caller fresh, independently mutable objects.
func renderVariant(t *testing.T, v render.Variant) []render.Object {
	t.Helper()
	renderMu.Lock()
	cached, ok := rendered[v.Name()]
	if !ok {
		tree, err := render.LoadTree("../..")
		if err != nil {
			renderMu.Unlock()
			t.Fatal(err)
		}
		if cached, err = tree.Render(v); err != nil {
			renderMu.Unlock()
			t.Fatal(err)
		}
		rendered[v.Name()] = cached
	}
	renderMu.Unlock()
	var objs []render.Object
	for _, o := range cached {
		fresh, err := render.Decode(o.YAML)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, fresh)
	}
	if vs := rules.Check(objs, externalSecrets); len(vs) > 0 {
		t.Fatalf("the unbroken variant must pass:\n%s", rules.Format(vs))
	}
	return objs
}

func deployment(t *testing.T, objs []render.Object, name string) *appsv1.Deployment {
	t.Helper()
	for _, o := range objs {
		if d, ok := o.Typed.(*appsv1.Deployment); ok && d.Name == name {
			return d
		}
	}
	t.Fatalf("no Deployment %s", name)
	return nil
}

func service(t *testing.T, objs []render.Object, name string) *corev1.Service {
	t.Helper()
	for _, o := range objs {
		if s, ok := o.Typed.(*corev1.Service); ok && s.Name == name {
			return s
		}
	}
	t.Fatalf("no Service %s", name)
	return nil
}

func container(t *testing.T, objs []render.Object, dep string) *corev1.Container {
	return &deployment(t, objs, dep).Spec.Template.Spec.Containers[0]
}

// TestRulesCatchBrokenManifests breaks one thing at a time in a rendered variant and expects the rule that
// guards it, with a message naming the object; so every rule is shown able to fail.
func TestRulesCatchBrokenManifests(t *testing.T) {
	tests := []struct {
		name    string
		variant render.Variant
		breakIt func(t *testing.T, objs []render.Object) []render.Object
		rule    string
		object  string
	}{
		{"selector does not match pod labels", render.Variant{Overlay: "dev"}, func(t *testing.T, objs []render.Object) []render.Object {
			deployment(t, objs, "search").Spec.Selector.MatchLabels["app.kubernetes.io/instance"] = "serach"
			return objs
		}, rules.RuleSelector, "Deployment/lookalike-dev/search"},
		{"service selects nothing", render.Variant{Overlay: "dev"}, func(t *testing.T, objs []render.Object) []render.Object {
			service(t, objs, "preprocess").Spec.Selector["app.kubernetes.io/name"] = "pre-process"
			return objs
		}, rules.RuleSelector, "Service/lookalike-dev/preprocess"},
		{"service targets a port the pods lack", render.Variant{Overlay: "dev"}, func(t *testing.T, objs []render.Object) []render.Object {
			service(t, objs, "gateway").Spec.Ports[0].TargetPort = intstr.FromString("htp")
			return objs
		}, rules.RuleSelector, "Service/lookalike-dev/gateway"},
		{"forgotten namespace", render.Variant{Overlay: "dev"}, func(t *testing.T, objs []render.Object) []render.Object {
			for _, o := range objs {
				if o.Generic.GetKind() == "Service" && o.Generic.GetName() == "embed" {
					o.Generic.SetNamespace("")
				}
			}
			return objs
		}, rules.RuleNamespace, "Service/embed"},
		{"no resources", render.Variant{Overlay: "dev"}, func(t *testing.T, objs []render.Object) []render.Object {
			container(t, objs, "embed").Resources = corev1.ResourceRequirements{}
			return objs
		}, rules.RuleResources, "Deployment/lookalike-dev/embed container embed"},
		{"request above limit", render.Variant{Overlay: "dev"}, func(t *testing.T, objs []render.Object) []render.Object {
			container(t, objs, "gateway").Resources.Requests[corev1.ResourceMemory] = resource.MustParse("4Gi")
			return objs
		}, rules.RuleResources, "Deployment/lookalike-dev/gateway container gateway"},
		{"no readiness probe", render.Variant{Overlay: "dev"}, func(t *testing.T, objs []render.Object) []render.Object {
			container(t, objs, "search").ReadinessProbe = nil
			return objs
		}, rules.RuleProbes, "Deployment/lookalike-dev/search container search"},
		{"embedder without startup probe", render.Variant{Overlay: "dev"}, func(t *testing.T, objs []render.Object) []render.Object {
			container(t, objs, "embed").StartupProbe = nil
			return objs
		}, rules.RuleProbes, "Deployment/lookalike-dev/embed container embed"},
		{"latest tag", render.Variant{Overlay: "dev"}, func(t *testing.T, objs []render.Object) []render.Object {
			container(t, objs, "preprocess").Image = "lookalike/preprocess:latest"
			return objs
		}, rules.RuleImage, "Deployment/lookalike-dev/preprocess container preprocess"},
		{"untagged image", render.Variant{Overlay: "dev"}, func(t *testing.T, objs []render.Object) []render.Object {
			container(t, objs, "preprocess").Image = "registry.example:5000/lookalike/preprocess"
			return objs
		}, rules.RuleImage, "Deployment/lookalike-dev/preprocess container preprocess"},
		{"runs as root", render.Variant{Overlay: "dev"}, func(t *testing.T, objs []render.Object) []render.Object {
			root := int64(0)
			deployment(t, objs, "gateway").Spec.Template.Spec.SecurityContext.RunAsUser = &root
			return objs
		}, rules.RuleHardening, "Deployment/lookalike-dev/gateway container gateway"},
		{"writable root filesystem", render.Variant{Overlay: "dev"}, func(t *testing.T, objs []render.Object) []render.Object {
			no := false
			container(t, objs, "search").SecurityContext.ReadOnlyRootFilesystem = &no
			return objs
		}, rules.RuleHardening, "Deployment/lookalike-dev/search container search"},
		{"capability added", render.Variant{Overlay: "dev"}, func(t *testing.T, objs []render.Object) []render.Object {
			container(t, objs, "embed").SecurityContext.Capabilities.Add = []corev1.Capability{"NET_ADMIN"}
			return objs
		}, rules.RuleHardening, "Deployment/lookalike-dev/embed container embed"},
		{"grace shorter than drain+shutdown", render.Variant{Overlay: "dev"}, func(t *testing.T, objs []render.Object) []render.Object {
			g := int64(20)
			deployment(t, objs, "gateway").Spec.Template.Spec.TerminationGracePeriodSeconds = &g
			return objs
		}, rules.RuleGrace, "Deployment/lookalike-dev/gateway"},
		{"config map reference lost", render.Variant{Overlay: "dev"}, func(t *testing.T, objs []render.Object) []render.Object {
			container(t, objs, "search").EnvFrom[0].ConfigMapRef.Name = "search-config"
			return objs
		}, rules.RuleReference, "Deployment/lookalike-dev/search"},
		{"pod outside every allow policy", render.Variant{Overlay: "dev"}, func(t *testing.T, objs []render.Object) []render.Object {
			for _, o := range objs {
				if np, ok := o.Typed.(*networkingv1.NetworkPolicy); ok && np.Name == "embed" {
					np.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "gateway"}}
				}
			}
			return objs
		}, rules.RuleNetworkPolicy, "Deployment/lookalike-dev/embed"},
		{"no default deny", render.Variant{Overlay: "dev"}, func(t *testing.T, objs []render.Object) []render.Object {
			var kept []render.Object
			for _, o := range objs {
				if o.Generic.GetName() != "default-deny" && !(o.Generic.GetKind() == "NetworkPolicy" && o.Generic.GetName() == "preprocess") {
					kept = append(kept, o)
				}
			}
			return kept
		}, rules.RuleNetworkPolicy, "Deployment/lookalike-dev/preprocess"},
		{"stable and canary behind one Service", render.Variant{Overlay: "dev", Components: []string{"embed-canary"}}, func(t *testing.T, objs []render.Object) []render.Object {
			delete(service(t, objs, "embed").Spec.Selector, "app.kubernetes.io/instance")
			return objs
		}, rules.RuleVectorSpace, "Service/lookalike-dev/embed"},
		{"canary Service pointed at stable pods", render.Variant{Overlay: "dev", Components: []string{"embed-canary"}}, func(t *testing.T, objs []render.Object) []render.Object {
			service(t, objs, "embed-canary").Spec.Selector["app.kubernetes.io/instance"] = "embed"
			return objs
		}, rules.RuleVectorSpace, "Service/lookalike-dev/embed-canary"},
		{"canary pods annotated with the stable model", render.Variant{Overlay: "dev", Components: []string{"embed-canary"}}, func(t *testing.T, objs []render.Object) []render.Object {
			deployment(t, objs, "embed-canary").Spec.Template.Annotations[rules.ModelIDAnnotation] = "mobilenetv2-int8-v1"
			return objs
		}, rules.RuleVectorSpace, "Deployment/lookalike-dev/embed-canary"},
		{"gpu component listed before the canary", render.Variant{Overlay: "dev", Components: []string{"embed-canary", "gpu"}}, func(t *testing.T, objs []render.Object) []render.Object {
			c := container(t, objs, "embed-canary")
			delete(c.Resources.Limits, "nvidia.com/gpu")
			return objs
		}, rules.RuleGPU, "Deployment/lookalike-dev/embed-canary"},
		{"HPA and replicas fight", render.Variant{Overlay: "dev"}, func(t *testing.T, objs []render.Object) []render.Object {
			n := int32(2)
			deployment(t, objs, "preprocess").Spec.Replicas = &n
			return objs
		}, rules.RuleAvailability, "Deployment/lookalike-dev/preprocess"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := tt.breakIt(t, renderVariant(t, tt.variant))
			vs := rules.Check(objs, externalSecrets)
			for _, v := range vs {
				if v.Rule == tt.rule && strings.HasPrefix(v.Object, tt.object) {
					return
				}
			}
			t.Fatalf("want a %q violation on %s, got:\n%s", tt.rule, tt.object, rules.Format(vs))
		})
	}
}
