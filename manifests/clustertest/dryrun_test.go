//go:build k8s

package clustertest

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/lookalike-dev/lookalike/manifests/internal/render"
)

func loadTree(t *testing.T) *render.Tree {
	t.Helper()
	tree, err := render.LoadTree("..")
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// TestServerSideDryRun (level b): the real kube-apiserver accepts every overlay x component combination,
// the Job template and the Secret templates with server-side apply, dry-run and strict field validation,
// and answers without a single warning (PodSecurity "restricted" warns on any non-compliant workload).
func TestServerSideDryRun(t *testing.T) {
	c := startControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tree := loadTree(t)
	secrets, err := render.SecretTemplates("..")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ensureNamespace(ctx, "lookalike"); err != nil {
		t.Fatal(err)
	}
	applied := 0
	for _, v := range render.AllVariants() {
		t.Run(v.Name(), func(t *testing.T) {
			objs, err := tree.Render(v)
			if err != nil {
				t.Fatal(err)
			}
			c.warnings.take()
			if err := c.applyAll(ctx, objs, true); err != nil {
				t.Fatalf("the API server refused: %v", err)
			}
			if w := c.warnings.take(); len(w) > 0 {
				t.Fatalf("the API server warned:\n%s", strings.Join(w, "\n"))
			}
			applied += len(objs)
		})
	}
	t.Run("secret-templates", func(t *testing.T) {
		if err := c.applyAll(ctx, secrets, true); err != nil {
			t.Fatalf("the API server refused a secret template: %v", err)
		}
	})
	if applied < 100 {
		t.Fatalf("only %d objects applied: variants lost their content", applied)
	}
	t.Logf("%d objects accepted by kube-apiserver %s (dry-run, strict)", applied, k8sVersion)
}

// TestAPIServerRefusesBrokenManifests (level b, negative): each case breaks one object of the dev overlay in
// a way strict YAML decoding alone may not see, and the API server must refuse it for that reason.
func TestAPIServerRefusesBrokenManifests(t *testing.T) {
	c := startControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	objs, err := loadTree(t).Render(render.Variant{Overlay: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	// the namespace exists (applied for real), so each refusal below is about the broken object
	if err := c.applyAll(ctx, objs, true); err != nil {
		t.Fatalf("the unbroken dev overlay must be accepted first: %v", err)
	}
	find := func(kind, name string) render.Object {
		for _, o := range objs {
			if o.Generic.GetKind() == kind && o.Generic.GetName() == name {
				return o
			}
		}
		t.Fatalf("no %s %s in the dev overlay", kind, name)
		return render.Object{}
	}
	set := func(m map[string]any, value any, path ...string) {
		if err := unstructured.SetNestedField(m, value, path...); err != nil {
			t.Fatal(err)
		}
	}
	// container0 reaches into the object itself (NestedSlice would return a copy)
	container0 := func(m map[string]any) map[string]any {
		spec := m["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
		return spec["containers"].([]any)[0].(map[string]any)
	}
	tests := []struct {
		name    string
		kind    string
		object  string
		breakIt func(m map[string]any)
		reason  func(error) bool
		message string // substring of the refusal; alternatives separated by |
	}{
		{"unknown field", "Deployment", "embed", func(m map[string]any) {
			set(m, int64(2), "spec", "replicaz")
		}, badRequestOrInvalid, "unknown field|field not declared in schema"},
		{"unknown field in a container", "Deployment", "gateway", func(m map[string]any) {
			container0(m)["imagePullPolice"] = "Always"
		}, badRequestOrInvalid, "unknown field|field not declared in schema"},
		{"wrong type", "Deployment", "search", func(m map[string]any) {
			set(m, "forty", "spec", "template", "spec", "terminationGracePeriodSeconds")
		}, badRequestOrInvalid, "terminationGracePeriodSeconds"},
		{"selector does not match the pod labels", "Deployment", "preprocess", func(m map[string]any) {
			set(m, "preprocess-typo", "spec", "selector", "matchLabels", "app.kubernetes.io/instance")
		}, apierrors.IsInvalid, "selector"},
		{"namespace that does not exist", "Service", "embed", func(m map[string]any) {
			set(m, "lookalike-typo", "metadata", "namespace")
		}, apierrors.IsNotFound, "lookalike-typo"},
		{"port out of range", "Service", "search", func(m map[string]any) {
			ports, _, _ := unstructured.NestedSlice(m, "spec", "ports")
			ports[0].(map[string]any)["port"] = int64(70000)
			set(m, ports, "spec", "ports")
		}, apierrors.IsInvalid, "port"},
		{"HPA scaling to zero", "HorizontalPodAutoscaler", "embed", func(m map[string]any) {
			set(m, int64(0), "spec", "minReplicas")
		}, apierrors.IsInvalid, "minReplicas|scaling to zero"},
		{"request above limit", "Deployment", "embed", func(m map[string]any) {
			container0(m)["resources"] = map[string]any{
				"requests": map[string]any{"cpu": "4", "memory": "1Gi"},
				"limits":   map[string]any{"cpu": "1", "memory": "1Gi"},
			}
		}, apierrors.IsInvalid, "must be less than or equal to cpu limit"},
		{"invalid label value", "Deployment", "gateway", func(m map[string]any) {
			set(m, "not a valid label value!", "spec", "template", "metadata", "labels", "app.kubernetes.io/component")
		}, apierrors.IsInvalid, "label"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := find(tt.kind, tt.object)
			m := jsonOf(t, o)
			tt.breakIt(m)
			ns, _, _ := unstructured.NestedString(m, "metadata", "namespace")
			err := c.applyJSON(ctx, o.GVK(), ns, o.Generic.GetName(), mustJSON(t, m), true)
			if err == nil {
				t.Fatal("the API server accepted the broken object")
			}
			if !tt.reason(err) || !containsAny(err.Error(), tt.message) {
				t.Fatalf("refused for another reason (want %q): %v (code %d, reason %q)", tt.message, err, statusCode(err), apierrors.ReasonForError(err))
			}
		})
	}

	// a pod running as root is refused by the namespace's restricted Pod Security level
	t.Run("root pod refused by Pod Security", func(t *testing.T) {
		dep := jsonOf(t, find("Deployment", "gateway"))
		tpl, _, _ := unstructured.NestedMap(dep, "spec", "template")
		spec := tpl["spec"].(map[string]any)
		spec["securityContext"] = map[string]any{"runAsUser": int64(0), "runAsNonRoot": false}
		pod := map[string]any{
			"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]any{"name": "root-pod", "namespace": "lookalike-dev", "labels": tpl["metadata"].(map[string]any)["labels"]},
			"spec":     spec,
		}
		err := c.applyJSON(ctx, schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, "lookalike-dev", "root-pod", mustJSON(t, pod), true)
		if err == nil || !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "restricted") {
			t.Fatalf("want a Pod Security refusal, got %v", err)
		}
	})
}

// badRequestOrInvalid: a schema refusal. Server-side apply reports fields the schema lacks and values of
// the wrong type as "failed to create typed patch object" with code 500 (kube-apiserver v1.37.2 behaviour,
// seen here); a plain create with fieldValidation=Strict says 400 "strict decoding error". Either is a
// refusal of the object, and the message must still name the field.
func badRequestOrInvalid(err error) bool {
	return apierrors.IsBadRequest(err) || apierrors.IsInvalid(err) ||
		(statusCode(err) == 500 && strings.Contains(err.Error(), "failed to create typed patch object"))
}

func containsAny(s, alternatives string) bool {
	for _, a := range strings.Split(alternatives, "|") {
		if strings.Contains(s, a) {
			return true
		}
	}
	return false
}

func statusCode(err error) int32 {
	if s, ok := err.(apierrors.APIStatus); ok {
		return s.Status().Code
	}
	return 0
}
