package manifests_test

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/lookalike-dev/lookalike/manifests/internal/render"
	"github.com/lookalike-dev/lookalike/manifests/internal/rules"
)

// Level (a): every overlay x component combination renders in process, strict-decodes into client-go
// types, and keeps the project's rules.

func loadTree(t *testing.T) *render.Tree {
	t.Helper()
	tree, err := render.LoadTree(".")
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func externalSecrets(t *testing.T) []string {
	t.Helper()
	objs, err := render.SecretTemplates(".")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range objs {
		if o.Generic.GetKind() != "Secret" {
			t.Fatalf("%s: a secret template must hold only Secrets", o.Key())
		}
		names = append(names, o.Generic.GetName())
	}
	return names
}

func TestVariantsRenderAndKeepRules(t *testing.T) {
	tree := loadTree(t)
	secrets := externalSecrets(t)
	for _, v := range render.AllVariants() {
		t.Run(v.Name(), func(t *testing.T) {
			objs, err := tree.Render(v)
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) == 0 {
				t.Fatal("rendered nothing")
			}
			if vs := rules.Check(objs, secrets); len(vs) > 0 {
				t.Fatalf("rules broken:\n%s", rules.Format(vs))
			}
		})
	}
}

// TestVariantContents pins what each overlay and component must produce, so a rule check that passes
// vacuously (nothing rendered) cannot hide a missing piece.
func TestVariantContents(t *testing.T) {
	tree := loadTree(t)
	tests := []struct {
		variant        render.Variant
		namespace      string
		deployments    []string
		qdrantReplicas int32
		wantGPU        bool
		gatewayEnv     map[string]string
	}{
		{render.Variant{Overlay: "dev"}, "lookalike-dev", []string{"embed", "gateway", "preprocess", "search"}, 1, false,
			map[string]string{"EMBED_URLS": "dns+http://embed-pods:8082", "GATEWAY_METRICS_ADDR": ":9090", "CANARY_SHARE": ""}},
		{render.Variant{Overlay: "prod"}, "lookalike", []string{"embed", "gateway", "preprocess", "search"}, 3, false, nil},
		{render.Variant{Overlay: "dev", Components: []string{"embed-canary"}}, "lookalike-dev",
			[]string{"embed", "embed-canary", "gateway", "preprocess", "search"}, 1, false,
			map[string]string{"CANARY_EMBED_URLS": "dns+http://embed-canary-pods:8082", "CANARY_MODEL": "mobilenetv2-int8-logits-v1", "CANARY_SHARE": "0.05"}},
		{render.Variant{Overlay: "prod", Components: []string{"embed-canary", "gpu"}}, "lookalike",
			[]string{"embed", "embed-canary", "gateway", "preprocess", "search"}, 3, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.variant.Name(), func(t *testing.T) {
			objs, err := tree.Render(tt.variant)
			if err != nil {
				t.Fatal(err)
			}
			var deps []string
			var qdrant *appsv1.StatefulSet
			gatewayEnv := map[string]string{}
			for _, o := range objs {
				if ns := o.Generic.GetNamespace(); ns != "" && ns != tt.namespace {
					t.Errorf("%s in namespace %q, want %q", o.Key(), ns, tt.namespace)
				}
				switch x := o.Typed.(type) {
				case *appsv1.Deployment:
					deps = append(deps, x.Name)
					for _, c := range x.Spec.Template.Spec.Containers {
						_, gpu := c.Resources.Limits["nvidia.com/gpu"]
						if strings.HasPrefix(x.Name, "embed") && gpu != tt.wantGPU {
							t.Errorf("%s: GPU limit %v, want %v", x.Name, gpu, tt.wantGPU)
						}
					}
				case *appsv1.StatefulSet:
					qdrant = x
				case *corev1.ConfigMap:
					if strings.HasPrefix(x.Name, "gateway-config-") {
						gatewayEnv = x.Data
					}
				}
			}
			slices.Sort(deps)
			if !slices.Equal(deps, tt.deployments) {
				t.Errorf("deployments %v, want %v", deps, tt.deployments)
			}
			if qdrant == nil || qdrant.Spec.Replicas == nil || *qdrant.Spec.Replicas != tt.qdrantReplicas {
				t.Errorf("qdrant replicas: got %v, want %d", qdrant, tt.qdrantReplicas)
			}
			// Behind the ingress every request's peer is an ingress pod: without trusted
			// proxies all shoppers would share one rate-limit bucket and one split key.
			if gatewayEnv["GATEWAY_TRUSTED_PROXIES"] == "" {
				t.Error("gateway config sets no GATEWAY_TRUSTED_PROXIES for the ingress")
			}
			if _, old := gatewayEnv["GATEWAY_TRUST_FORWARDED"]; old {
				t.Error("gateway config still sets GATEWAY_TRUST_FORWARDED, which the gateway no longer reads")
			}
			for k, want := range tt.gatewayEnv {
				if got := gatewayEnv[k]; got != want {
					t.Errorf("gateway config %s=%q, want %q", k, got, want)
				}
			}
		})
	}
}

// TestContainersRunAsNonRoot: every container of every variant runs as a non-root uid with a
// read-only root filesystem and no capabilities; checked directly, not only through rules.Check.
func TestContainersRunAsNonRoot(t *testing.T) {
	tree := loadTree(t)
	seen := 0
	for _, v := range render.AllVariants() {
		objs, err := tree.Render(v)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			var spec *corev1.PodSpec
			switch x := o.Typed.(type) {
			case *appsv1.Deployment:
				spec = &x.Spec.Template.Spec
			case *appsv1.StatefulSet:
				spec = &x.Spec.Template.Spec
			default:
				if tpl := jobSpec(o); tpl != nil {
					spec = tpl
				}
			}
			if spec == nil {
				continue
			}
			for _, c := range append(spec.InitContainers, spec.Containers...) {
				seen++
				uid := spec.SecurityContext.RunAsUser
				if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
					uid = c.SecurityContext.RunAsUser
				}
				if uid == nil || *uid == 0 {
					t.Errorf("%s %s/%s: uid %v", v.Name(), o.Key(), c.Name, uid)
				}
				if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
					t.Errorf("%s %s/%s: writable root filesystem", v.Name(), o.Key(), c.Name)
				}
			}
		}
	}
	if seen < 20 {
		t.Fatalf("checked only %d containers: rendering lost workloads", seen)
	}
}

func TestSecretTemplatesHoldNoSecret(t *testing.T) {
	objs, err := render.SecretTemplates(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		s := o.Typed.(*corev1.Secret)
		if len(s.Data) > 0 {
			t.Errorf("%s: template carries data", o.Key())
		}
		for k, v := range s.StringData {
			if !strings.HasPrefix(v, "REPLACE-ME") {
				t.Errorf("%s: key %s holds something other than a placeholder", o.Key(), k)
			}
		}
	}
}
