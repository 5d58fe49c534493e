//go:build k8s

package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/lookalike-dev/lookalike/manifests/internal/render"
)

// Versions pinned by hack/k8s/build-binaries.sh.
const (
	k8sVersion  = "v1.37.2"
	etcdVersion = "v3.7.3"
	kwokVersion = "v0.8.0"
)

func cacheDir() string {
	if d := os.Getenv("LOOKALIKE_K8S_CACHE"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "lookalike-k8s")
}

// binary returns the path of a cached control-plane binary, failing the test clearly when it is missing.
func binary(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(cacheDir(), dir, name)
	if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("%s missing at %s: run `make setup-k8s` (hack/k8s/build-binaries.sh) first", name, p)
	}
	return p
}

// assetsDir is the envtest asset folder (etcd, kube-apiserver, kubectl).
func assetsDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	binary(t, "etcd-"+etcdVersion, "etcd")
	binary(t, k8sVersion, "kube-apiserver")
	return filepath.Join(cacheDir(), "assets-"+k8sVersion)
}

// warnings collects the API server's warning headers (PodSecurity, deprecated APIs, ...).
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.list
	w.list = nil
	return out
}

// cluster is a running control plane and clients for it.
type cluster struct {
	env      *envtest.Environment
	cfg      *rest.Config
	kube     kubernetes.Interface
	dyn      dynamic.Interface
	mapper   meta.RESTMapper
	warnings *warnings
	dir      string
}

// startControlPlane starts etcd and kube-apiserver through envtest and stops them at the end of the test.
func startControlPlane(t *testing.T) *cluster {
	t.Helper()
	ctrllog.SetLogger(logr.Discard()) // envtest logs through controller-runtime; the test reports itself
	env := &envtest.Environment{
		BinaryAssetsDirectory:    assetsDir(t),
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	t0 := time.Now()
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting etcd + kube-apiserver: %v", err)
	}
	t.Logf("control plane up in %s", time.Since(t0).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Logf("stopping control plane: %v", err)
		}
	})
	w := &warnings{}
	cfg = rest.CopyConfig(cfg)
	cfg.WarningHandler = w
	cfg.QPS, cfg.Burst = 200, 400
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{
		env: env, cfg: cfg, kube: kube, dyn: dyn, warnings: w, dir: t.TempDir(),
		mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)),
	}
}

// kubeconfig writes the admin kubeconfig for the helper processes.
func (c *cluster) kubeconfig(t *testing.T) string {
	t.Helper()
	p := filepath.Join(c.dir, "kubeconfig")
	if err := os.WriteFile(p, c.env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startProcess runs a helper binary until the test ends, logging to a file that is printed on failure.
func (c *cluster) startProcess(t *testing.T, name, bin string, args ...string) {
	t.Helper()
	logPath := filepath.Join(c.dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		logFile.Close()
		if t.Failed() {
			data, _ := os.ReadFile(logPath)
			t.Logf("---- last lines of %s ----\n%s", name, tail(data, 40))
		}
	})
	// a helper that dies at once has bad flags: say so now rather than time out later
	select {
	case err := <-exited:
		data, _ := os.ReadFile(logPath)
		t.Fatalf("%s exited at start (%v):\n%s", name, err, tail(data, 40))
	case <-time.After(2 * time.Second):
	}
}

func tail(data []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// applyOptions: server-side apply, strict field validation, optionally dry-run.
func applyOptions(dryRun bool) metav1.PatchOptions {
	force := true
	o := metav1.PatchOptions{FieldManager: "lookalike-manifests-test", Force: &force, FieldValidation: "Strict"}
	if dryRun {
		o.DryRun = []string{metav1.DryRunAll}
	}
	return o
}

// applyJSON server-side-applies one object given as JSON.
func (c *cluster) applyJSON(ctx context.Context, gvk schema.GroupVersionKind, ns, name string, body []byte, dryRun bool) error {
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return fmt.Errorf("mapping %s: %w", gvk, err)
	}
	var ri dynamic.ResourceInterface = c.dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ri = c.dyn.Resource(m.Resource).Namespace(ns)
	}
	_, err = ri.Patch(ctx, name, types.ApplyPatchType, body, applyOptions(dryRun))
	return err
}

// apply server-side-applies a rendered object.
func (c *cluster) apply(ctx context.Context, o render.Object, dryRun bool) error {
	body, err := yaml.YAMLToJSON(o.YAML)
	if err != nil {
		return err
	}
	return c.applyJSON(ctx, o.GVK(), o.Generic.GetNamespace(), o.Generic.GetName(), body, dryRun)
}

// applyAll applies Namespaces for real first (dry-run objects need them to exist), then everything else.
func (c *cluster) applyAll(ctx context.Context, objs []render.Object, dryRun bool) error {
	for _, o := range objs {
		if o.Generic.GetKind() == "Namespace" {
			if err := c.apply(ctx, o, false); err != nil {
				return fmt.Errorf("%s: %w", o.Key(), err)
			}
		}
	}
	for _, o := range objs {
		if o.Generic.GetKind() == "Namespace" {
			continue
		}
		if err := c.apply(ctx, o, dryRun); err != nil {
			return fmt.Errorf("%s: %w", o.Key(), err)
		}
	}
	return nil
}

// ensureNamespace creates a namespace labelled like ours (restricted Pod Security) if it is missing.
func (c *cluster) ensureNamespace(ctx context.Context, name string) error {
	body, _ := json.Marshal(map[string]any{
		"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": name, "labels": map[string]string{
			"pod-security.kubernetes.io/enforce": "restricted",
		}},
	})
	return c.applyJSON(ctx, schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}, "", name, body, false)
}

func jsonOf(t *testing.T, o render.Object) map[string]any {
	t.Helper()
	var m map[string]any
	js, err := yaml.YAMLToJSON(o.YAML)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
