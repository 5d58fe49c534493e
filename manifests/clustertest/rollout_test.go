//go:build k8s

package clustertest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/lookalike-dev/lookalike/manifests/internal/render"
)

const devNS = "lookalike-dev"

// startSimulation adds kube-controller-manager, kube-scheduler and kwok (fake nodes whose pods become
// Running and Ready) to the control plane, and three fake nodes in three zones.
func startSimulation(t *testing.T, ctx context.Context, c *cluster) {
	t.Helper()
	kc := c.kubeconfig(t)
	k8sDir := k8sVersion
	c.startProcess(t, "kube-controller-manager", binary(t, k8sDir, "kube-controller-manager"),
		"--kubeconfig="+kc,
		"--authentication-kubeconfig="+kc,
		"--authorization-kubeconfig="+kc,
		"--leader-elect=false",
		"--secure-port=0",
		"--controllers=*,-serviceaccount-token,-nodeipam",
		"--use-service-account-credentials=false",
		"--concurrent-deployment-syncs=10",
		"--node-monitor-grace-period=60s",
		"--v=1",
	)
	c.startProcess(t, "kube-scheduler", binary(t, k8sDir, "kube-scheduler"),
		"--kubeconfig="+kc,
		"--authentication-kubeconfig="+kc,
		"--authorization-kubeconfig="+kc,
		"--leader-elect=false",
		"--secure-port=0",
		"--v=1",
	)
	stages := kwokStages(t, c)
	c.startProcess(t, "kwok", binary(t, "kwok-"+kwokVersion, "kwok"),
		"--kubeconfig="+kc,
		"--manage-all-nodes=true",
		"--cidr=192.0.2.0/24", // documentation range: stored addresses only, never dialled
		"--node-ip=127.0.0.1",
		"--node-port=0", // no kubelet-like server: nothing here needs logs or exec
		"--config="+stages,
	)
	for i, zone := range []string{"zone-a", "zone-b", "zone-c"} {
		name := fmt.Sprintf("kwok-node-%d", i)
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:        name,
				Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
				Labels: map[string]string{
					"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
					"topology.kubernetes.io/zone": zone, "type": "kwok",
				},
			},
			Status: corev1.NodeStatus{
				Allocatable: nodeResources(),
				Capacity:    nodeResources(),
			},
		}
		if _, err := c.kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating node %s: %v", name, err)
		}
	}
	// no volume provisioner here: static volumes for Qdrant's two claims
	for _, claim := range []string{"qdrant-storage", "qdrant-snapshots"} {
		pv := &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: "pv-" + claim},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("10Gi")},
				AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
				PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/tmp/" + claim}},
				ClaimRef:                      &corev1.ObjectReference{Namespace: devNS, Name: claim + "-qdrant-0"},
			},
		}
		if _, err := c.kube.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating %s: %v", pv.Name, err)
		}
	}
}

func nodeResources() corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("128Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
}

// kwokStages writes kwok's Stage objects (node/fast, node/heartbeat, pod/fast) into one config file.
func kwokStages(t *testing.T, c *cluster) string {
	t.Helper()
	dir := filepath.Join(cacheDir(), "kwok-"+kwokVersion, "stage")
	if d := os.Getenv("LOOKALIKE_KWOK_STAGES"); d != "" {
		dir = d
	}
	var docs []string
	for _, s := range []string{"node/fast", "node/heartbeat", "pod/fast"} {
		files, _ := filepath.Glob(filepath.Join(dir, s, "*.yaml"))
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(data), "kind: Stage") {
				docs = append(docs, string(data))
			}
		}
	}
	if len(docs) < 3 {
		t.Fatalf("kwok stages missing under %s: run `make setup-k8s`", dir)
	}
	p := filepath.Join(c.dir, "kwok-stages.yaml")
	if err := os.WriteFile(p, []byte(strings.Join(docs, "\n---\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// rolledOut reports whether every Deployment and StatefulSet in ns finished its rollout.
func rolledOut(ctx context.Context, c *cluster, ns string) (bool, string, error) {
	deps, err := c.kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, "", err
	}
	for _, d := range deps.Items {
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		s := d.Status
		if s.ObservedGeneration < d.Generation || s.UpdatedReplicas != want || s.Replicas != want || s.AvailableReplicas != want {
			return false, fmt.Sprintf("deployment %s: gen %d/%d updated %d replicas %d available %d want %d",
				d.Name, s.ObservedGeneration, d.Generation, s.UpdatedReplicas, s.Replicas, s.AvailableReplicas, want), nil
		}
	}
	sts, err := c.kube.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, "", err
	}
	for _, s := range sts.Items {
		if s.Status.ObservedGeneration < s.Generation || s.Status.ReadyReplicas != *s.Spec.Replicas || s.Status.UpdatedReplicas != *s.Spec.Replicas {
			return false, fmt.Sprintf("statefulset %s: ready %d updated %d want %d", s.Name, s.Status.ReadyReplicas, s.Status.UpdatedReplicas, *s.Spec.Replicas), nil
		}
	}
	return len(deps.Items) > 0, "", nil
}

func waitRolledOut(t *testing.T, ctx context.Context, c *cluster, ns string) {
	t.Helper()
	t0 := time.Now()
	var last string
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 4*time.Minute, true, func(ctx context.Context) (bool, error) {
		ok, why, err := rolledOut(ctx, c, ns)
		last = why
		return ok, err
	})
	if err != nil {
		pods, _ := c.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		var b strings.Builder
		for _, p := range pods.Items {
			fmt.Fprintf(&b, "  %s node=%q phase=%s", p.Name, p.Spec.NodeName, p.Status.Phase)
			for _, cond := range p.Status.Conditions {
				if cond.Status != corev1.ConditionTrue {
					fmt.Fprintf(&b, " %s=%s(%s)", cond.Type, cond.Status, cond.Message)
				}
			}
			b.WriteString("\n")
		}
		events, _ := c.kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		for _, e := range events.Items {
			if e.Type == corev1.EventTypeWarning {
				fmt.Fprintf(&b, "  event %s %s: %s\n", e.InvolvedObject.Name, e.Reason, e.Message)
			}
		}
		t.Fatalf("rollout did not finish: %s (%v)\npods:\n%s", last, err, b.String())
	}
	t.Logf("rolled out in %s", time.Since(t0).Round(100*time.Millisecond))
}

// podsByApp maps each workload (app.kubernetes.io/instance) to its running pods' UIDs.
func podsByApp(t *testing.T, ctx context.Context, c *cluster) map[string][]string {
	t.Helper()
	pods, err := c.kube.CoreV1().Pods(devNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		app := p.Labels["app.kubernetes.io/instance"]
		out[app] = append(out[app], string(p.UID))
	}
	for _, v := range out {
		sort.Strings(v)
	}
	return out
}

func generations(t *testing.T, ctx context.Context, c *cluster) map[string]int64 {
	t.Helper()
	deps, err := c.kube.AppsV1().Deployments(devNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, d := range deps.Items {
		out[d.Name] = d.Generation
	}
	return out
}

func deploymentImage(t *testing.T, ctx context.Context, c *cluster, name string) string {
	t.Helper()
	d, err := c.kube.AppsV1().Deployments(devNS).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d.Spec.Template.Spec.Containers[0].Image
}

func sameSet(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

func disjoint(a, b []string) bool {
	seen := map[string]bool{}
	for _, x := range a {
		seen[x] = true
	}
	for _, y := range b {
		if seen[y] {
			return false
		}
	}
	return true
}

// TestRolloutSimulation (level c).
func TestRolloutSimulation(t *testing.T) {
	c := startControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	startSimulation(t, ctx, c)
	tree := loadTree(t)
	render1 := func(v render.Variant) []render.Object {
		objs, err := tree.Render(v)
		if err != nil {
			t.Fatal(err)
		}
		return objs
	}

	// 1. the dev overlay rolls out: every Deployment and Qdrant's StatefulSet become ready on kwok nodes
	if err := c.applyAll(ctx, render1(render.Variant{Overlay: "dev"}), false); err != nil {
		t.Fatalf("applying dev: %v", err)
	}
	waitRolledOut(t, ctx, c, devNS)
	before := podsByApp(t, ctx, c)
	gensBefore := generations(t, ctx, c)
	for _, app := range []string{"gateway", "preprocess", "embed", "search", "qdrant"} {
		if len(before[app]) != 1 {
			t.Fatalf("dev runs one %s pod, found %d (%v)", app, len(before[app]), before)
		}
	}

	// 2. only embed's image changes: only embed's Deployment moves and only its pods are replaced
	if err := c.applyAll(ctx, render1(render.Variant{Overlay: "dev", ImageTags: map[string]string{"lookalike/embed": "0.1.1"}}), false); err != nil {
		t.Fatalf("applying the new embed image: %v", err)
	}
	waitRolledOut(t, ctx, c, devNS)
	after := podsByApp(t, ctx, c)
	gensAfter := generations(t, ctx, c)
	for name, g := range gensBefore {
		switch {
		case name == "embed" && gensAfter[name] == g:
			t.Errorf("embed's Deployment did not change (generation %d)", g)
		case name != "embed" && gensAfter[name] != g:
			t.Errorf("%s's Deployment changed (generation %d -> %d) though only embed's image did", name, g, gensAfter[name])
		}
	}
	t.Logf("after the embed image change: embed pods %v -> %v; generations %v -> %v", before["embed"], after["embed"], gensBefore, gensAfter)
	if img := deploymentImage(t, ctx, c, "embed"); img != "lookalike/embed:0.1.1" {
		t.Errorf("embed image %s, want lookalike/embed:0.1.1", img)
	}
	if !disjoint(before["embed"], after["embed"]) || len(after["embed"]) != 1 {
		t.Errorf("embed pods not replaced: before %v after %v", before["embed"], after["embed"])
	}
	for _, app := range []string{"gateway", "preprocess", "search", "qdrant"} {
		if !sameSet(before[app], after[app]) {
			t.Errorf("%s pods changed: before %v after %v", app, before[app], after[app])
		}
	}

	// 3. the canary component: embed-canary comes up; the gateway rolls for its new split config;
	// stable embed, preprocess, search and qdrant keep their pods
	canary := render.Variant{Overlay: "dev", Components: []string{"embed-canary"}, ImageTags: map[string]string{"lookalike/embed": "0.1.1"}}
	if err := c.applyAll(ctx, render1(canary), false); err != nil {
		t.Fatalf("applying the canary: %v", err)
	}
	waitRolledOut(t, ctx, c, devNS)
	withCanary := podsByApp(t, ctx, c)
	if len(withCanary["embed-canary"]) != 1 {
		t.Errorf("embed-canary pods: %v", withCanary["embed-canary"])
	}
	if !disjoint(after["gateway"], withCanary["gateway"]) {
		t.Errorf("gateway kept its pods though its config gained the canary split")
	}
	for _, app := range []string{"embed", "preprocess", "search", "qdrant"} {
		if !sameSet(after[app], withCanary[app]) {
			t.Errorf("%s pods changed when the canary was added: before %v after %v", app, after[app], withCanary[app])
		}
	}
	t.Logf("with the canary: gateway pods %v -> %v, embed-canary pods %v", after["gateway"], withCanary["gateway"], withCanary["embed-canary"])
	checkEndpointsDoNotMixTracks(t, ctx, c)
	gw, err := c.kube.AppsV1().Deployments(devNS).Get(ctx, "gateway", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cmName := gw.Spec.Template.Spec.Containers[0].EnvFrom[0].ConfigMapRef.Name
	cm, err := c.kube.CoreV1().ConfigMaps(devNS).Get(ctx, cmName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data["CANARY_EMBED_URLS"] != "dns+http://embed-canary-pods:8082" || cm.Data["CANARY_SHARE"] == "" {
		t.Errorf("gateway config %s lacks the canary split: %v", cmName, cm.Data)
	}
}

// checkEndpointsDoNotMixTracks: the endpoints the controllers computed for Service embed hold only stable
// pods, and those of embed-canary only canary pods.
func checkEndpointsDoNotMixTracks(t *testing.T, ctx context.Context, c *cluster) {
	t.Helper()
	pods, err := c.kube.CoreV1().Pods(devNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=embed"})
	if err != nil {
		t.Fatal(err)
	}
	track := map[string]string{}
	for _, p := range pods.Items {
		track[p.Name] = p.Labels["lookalike.dev/track"]
	}
	for svc, want := range map[string]string{"embed": "stable", "embed-canary": "canary"} {
		var got []string
		err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			slices, err := c.kube.DiscoveryV1().EndpointSlices(devNS).List(ctx, metav1.ListOptions{
				LabelSelector: labels.Set{discoveryv1.LabelServiceName: svc}.String(),
			})
			if err != nil {
				return false, err
			}
			got = nil
			for _, s := range slices.Items {
				for _, e := range s.Endpoints {
					if e.TargetRef != nil {
						got = append(got, e.TargetRef.Name)
					}
				}
			}
			return len(got) > 0, nil
		})
		if err != nil {
			t.Errorf("Service %s has no endpoints: %v", svc, err)
			continue
		}
		t.Logf("Service %s endpoints: %v", svc, got)
		for _, name := range got {
			if track[name] != want {
				t.Errorf("Service %s sends traffic to %s of track %q: vector spaces mixed", svc, name, track[name])
			}
		}
	}
}
