// Package rules checks the project's own rules on rendered manifests: what neither strict decoding nor the
// API server enforces (selectors that select something, hardening, probes, tagged images, network policy
// coverage, and that stable and canary embedders never share a Service).
package rules

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lookalike-dev/lookalike/shared/lifecycle"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/lookalike-dev/lookalike/manifests/internal/render"
)

// Annotations and labels with a meaning for the rules.
const (
	// ModelIDAnnotation on an embedder pod template names the vector space its pods produce.
	ModelIDAnnotation = "lookalike.dev/model-id"
	// MixedModelsAnnotation on a Service says, with a reason, that mixing vector spaces behind it is intended.
	MixedModelsAnnotation = "lookalike.dev/mixed-model-ids-intended"
	// DefaultDrain and DefaultShutdown are the services' own defaults.
	DefaultDrain    = lifecycle.DrainDelay
	DefaultShutdown = lifecycle.ShutdownTimeout
)

// Violation is one broken rule.
type Violation struct {
	Rule    string
	Object  string
	Message string
}

func (v Violation) String() string { return fmt.Sprintf("[%s] %s: %s", v.Rule, v.Object, v.Message) }

// Rule names, stable so tests can assert on them.
const (
	RuleSelector      = "selector"
	RuleNamespace     = "namespace"
	RuleResources     = "resources"
	RuleProbes        = "probes"
	RuleImage         = "image"
	RuleNetworkPolicy = "network-policy"
	RuleVectorSpace   = "vector-space"
	RuleHardening     = "hardening"
	RuleGrace         = "termination-grace"
	RuleLabels        = "labels"
	RuleReference     = "reference"
	RuleGPU           = "gpu"
	RuleAvailability  = "availability"
)

// clusterScoped kinds need no namespace.
var clusterScoped = map[string]bool{
	"Namespace": true, "PersistentVolume": true, "ClusterRole": true, "ClusterRoleBinding": true,
	"StorageClass": true, "PriorityClass": true, "IngressClass": true, "CustomResourceDefinition": true,
	"Node": true,
}

// podTemplate is a pod template with the workload that owns it.
type podTemplate struct {
	owner     render.Object
	kind      string
	name      string
	ns        string
	tpl       *corev1.PodTemplateSpec
	longLived bool // Deployment/StatefulSet/DaemonSet (probes apply); Jobs run to completion
}

func (p podTemplate) key() string { return p.kind + "/" + p.ns + "/" + p.name }

func podTemplates(objs []render.Object) []podTemplate {
	var out []podTemplate
	for _, o := range objs {
		ns, name := o.Generic.GetNamespace(), o.Generic.GetName()
		switch t := o.Typed.(type) {
		case *appsv1.Deployment:
			out = append(out, podTemplate{o, "Deployment", name, ns, &t.Spec.Template, true})
		case *appsv1.StatefulSet:
			out = append(out, podTemplate{o, "StatefulSet", name, ns, &t.Spec.Template, true})
		case *appsv1.DaemonSet:
			out = append(out, podTemplate{o, "DaemonSet", name, ns, &t.Spec.Template, true})
		case *batchv1.Job:
			out = append(out, podTemplate{o, "Job", name, ns, &t.Spec.Template, false})
		case *batchv1.CronJob:
			out = append(out, podTemplate{o, "CronJob", name, ns, &t.Spec.JobTemplate.Spec.Template, false})
		}
	}
	return out
}

// Check runs every rule over one rendered variant. externalSecrets names Secrets that are created outside
// the manifests (from the templates in manifests/secrets); any other reference must resolve in objs.
func Check(objs []render.Object, externalSecrets []string) []Violation {
	c := &checker{objs: objs, pods: podTemplates(objs), external: map[string]bool{}}
	for _, s := range externalSecrets {
		c.external[s] = true
	}
	c.namespaces()
	c.labels()
	c.selectors()
	c.containers()
	c.hardening()
	c.grace()
	c.references()
	c.networkPolicies()
	c.vectorSpaces()
	c.gpu()
	c.availability()
	sort.SliceStable(c.out, func(i, j int) bool { return c.out[i].String() < c.out[j].String() })
	return c.out
}

type checker struct {
	objs     []render.Object
	pods     []podTemplate
	external map[string]bool
	out      []Violation
}

func (c *checker) add(rule, obj, format string, args ...any) {
	c.out = append(c.out, Violation{Rule: rule, Object: obj, Message: fmt.Sprintf(format, args...)})
}

func (c *checker) namespaces() {
	seen := map[string]bool{}
	for _, o := range c.objs {
		kind := o.Generic.GetKind()
		if clusterScoped[kind] {
			continue
		}
		ns := o.Generic.GetNamespace()
		if ns == "" {
			c.add(RuleNamespace, o.Key(), "namespaced object without a namespace")
			continue
		}
		seen[ns] = true
	}
	if len(seen) > 1 {
		var list []string
		for ns := range seen {
			list = append(list, ns)
		}
		sort.Strings(list)
		c.add(RuleNamespace, "(variant)", "objects spread over several namespaces: %s", strings.Join(list, ", "))
	}
	for _, o := range c.objs {
		if o.Generic.GetKind() == "Namespace" && len(seen) == 1 && !seen[o.Generic.GetName()] {
			c.add(RuleNamespace, o.Key(), "Namespace object does not match the objects' namespace")
		}
	}
}

func (c *checker) labels() {
	for _, o := range c.objs {
		if o.Generic.GetKind() == "Namespace" {
			continue
		}
		l := o.Generic.GetLabels()
		for _, k := range []string{"app.kubernetes.io/part-of", "app.kubernetes.io/managed-by"} {
			if l[k] == "" {
				c.add(RuleLabels, o.Key(), "missing label %s", k)
			}
		}
		if l["app.kubernetes.io/name"] == "" && o.Generic.GetKind() != "NetworkPolicy" {
			c.add(RuleLabels, o.Key(), "missing label app.kubernetes.io/name")
		}
	}
	for _, p := range c.pods {
		for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/component", "app.kubernetes.io/part-of"} {
			if p.tpl.Labels[k] == "" {
				c.add(RuleLabels, p.key(), "pod template missing label %s", k)
			}
		}
		if p.longLived && p.tpl.Labels["app.kubernetes.io/instance"] == "" {
			c.add(RuleLabels, p.key(), "pod template missing label app.kubernetes.io/instance")
		}
	}
}

// selects reports whether a label selector selects a pod template in the same namespace.
func selects(sel labels.Selector, ns string, p podTemplate) bool {
	return p.ns == ns && !sel.Empty() && sel.Matches(labels.Set(p.tpl.Labels))
}

func (c *checker) selectedPods(ns string, sel labels.Selector) []podTemplate {
	var out []podTemplate
	for _, p := range c.pods {
		if selects(sel, ns, p) {
			out = append(out, p)
		}
	}
	return out
}

func (c *checker) selectors() {
	for _, p := range c.pods {
		var ls *metav1.LabelSelector
		switch t := p.owner.Typed.(type) {
		case *appsv1.Deployment:
			ls = t.Spec.Selector
		case *appsv1.StatefulSet:
			ls = t.Spec.Selector
		case *appsv1.DaemonSet:
			ls = t.Spec.Selector
		}
		if p.longLived {
			sel, err := metav1.LabelSelectorAsSelector(ls)
			switch {
			case ls == nil || err != nil || sel.Empty():
				c.add(RuleSelector, p.key(), "missing or invalid selector")
			case !sel.Matches(labels.Set(p.tpl.Labels)):
				c.add(RuleSelector, p.key(), "selector %s does not match the pod template labels %v", sel, p.tpl.Labels)
			}
		}
		for _, tsc := range p.tpl.Spec.TopologySpreadConstraints {
			sel, err := metav1.LabelSelectorAsSelector(tsc.LabelSelector)
			if err != nil || !sel.Matches(labels.Set(p.tpl.Labels)) {
				c.add(RuleSelector, p.key(), "topology spread selector does not match its own pods")
			}
		}
	}
	for _, o := range c.objs {
		ns := o.Generic.GetNamespace()
		switch t := o.Typed.(type) {
		case *corev1.Service:
			if len(t.Spec.Selector) == 0 {
				c.add(RuleSelector, o.Key(), "Service without a selector")
				continue
			}
			pods := c.selectedPods(ns, labels.SelectorFromSet(t.Spec.Selector))
			if len(pods) == 0 {
				c.add(RuleSelector, o.Key(), "selector %v selects no pod template", t.Spec.Selector)
			}
			for _, port := range t.Spec.Ports {
				for _, p := range pods {
					if !exposes(p.tpl, port.TargetPort, port.Port) {
						c.add(RuleSelector, o.Key(), "port %s: target %s is not a port of %s", port.Name, port.TargetPort.String(), p.key())
					}
				}
			}
		case *policyv1.PodDisruptionBudget:
			sel, err := metav1.LabelSelectorAsSelector(t.Spec.Selector)
			if err != nil || len(c.selectedPods(ns, sel)) == 0 {
				c.add(RuleSelector, o.Key(), "PodDisruptionBudget selects no pod template")
			}
		case *networkingv1.NetworkPolicy:
			sel, err := metav1.LabelSelectorAsSelector(&t.Spec.PodSelector)
			if err != nil {
				c.add(RuleSelector, o.Key(), "invalid pod selector: %v", err)
				continue
			}
			if !sel.Empty() && len(c.selectedPods(ns, sel)) == 0 {
				c.add(RuleSelector, o.Key(), "NetworkPolicy selects no pod template")
			}
		case *autoscalingv2.HorizontalPodAutoscaler:
			if c.find(t.Spec.ScaleTargetRef.Kind, ns, t.Spec.ScaleTargetRef.Name) == nil {
				c.add(RuleSelector, o.Key(), "scale target %s/%s not found", t.Spec.ScaleTargetRef.Kind, t.Spec.ScaleTargetRef.Name)
			}
		case *networkingv1.Ingress:
			for _, r := range t.Spec.Rules {
				if r.HTTP == nil {
					continue
				}
				for _, pth := range r.HTTP.Paths {
					if pth.Backend.Service != nil && c.find("Service", ns, pth.Backend.Service.Name) == nil {
						c.add(RuleSelector, o.Key(), "backend Service %s not found", pth.Backend.Service.Name)
					}
				}
			}
		}
	}
}

func exposes(tpl *corev1.PodTemplateSpec, target intstr.IntOrString, port int32) bool {
	for _, ctr := range tpl.Spec.Containers {
		for _, cp := range ctr.Ports {
			switch {
			case target.Type == intstr.String && target.StrVal != "" && cp.Name == target.StrVal:
				return true
			case target.Type == intstr.Int && target.IntVal != 0 && cp.ContainerPort == target.IntVal:
				return true
			case target.Type == intstr.Int && target.IntVal == 0 && cp.ContainerPort == port:
				return true
			}
		}
	}
	return false
}

func (c *checker) find(kind, ns, name string) *render.Object {
	for i, o := range c.objs {
		if o.Generic.GetKind() == kind && o.Generic.GetNamespace() == ns && o.Generic.GetName() == name {
			return &c.objs[i]
		}
	}
	return nil
}

func (c *checker) containers() {
	for _, p := range c.pods {
		all := append(append([]corev1.Container{}, p.tpl.Spec.InitContainers...), p.tpl.Spec.Containers...)
		for _, ctr := range all {
			id := p.key() + " container " + ctr.Name
			req, lim := ctr.Resources.Requests, ctr.Resources.Limits
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, ok := req[r]; !ok {
					c.add(RuleResources, id, "no %s request", r)
				}
			}
			if _, ok := lim[corev1.ResourceMemory]; !ok {
				c.add(RuleResources, id, "no memory limit")
			}
			for r, l := range lim {
				if q, ok := req[r]; ok && q.Cmp(l) > 0 {
					c.add(RuleResources, id, "%s request %s above its limit %s", r, q.String(), l.String())
				}
			}
			c.image(id, ctr.Image)
		}
		if !p.longLived {
			continue
		}
		for _, ctr := range p.tpl.Spec.Containers {
			id := p.key() + " container " + ctr.Name
			if ctr.LivenessProbe == nil {
				c.add(RuleProbes, id, "no liveness probe")
			}
			if ctr.ReadinessProbe == nil {
				c.add(RuleProbes, id, "no readiness probe")
			}
			if p.tpl.Labels["app.kubernetes.io/component"] == "embedder" && ctr.StartupProbe == nil {
				c.add(RuleProbes, id, "an embedder loads its model at start: it needs a startup probe")
			}
			for _, pr := range []*corev1.Probe{ctr.LivenessProbe, ctr.ReadinessProbe, ctr.StartupProbe} {
				if pr == nil || pr.HTTPGet == nil {
					continue
				}
				if !exposes(&corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{ctr}}}, pr.HTTPGet.Port, -1) {
					c.add(RuleProbes, id, "probe %s targets port %s that the container does not declare", pr.HTTPGet.Path, pr.HTTPGet.Port.String())
				}
			}
		}
	}
}

func (c *checker) image(id, image string) {
	if strings.Contains(image, "@sha256:") {
		return
	}
	last := image[strings.LastIndex(image, "/")+1:]
	i := strings.LastIndex(last, ":")
	switch {
	case i < 0:
		c.add(RuleImage, id, "image %q has no tag", image)
	case last[i+1:] == "latest":
		c.add(RuleImage, id, "image %q uses the latest tag", image)
	}
}

func (c *checker) hardening() {
	for _, p := range c.pods {
		spec := &p.tpl.Spec
		psc := spec.SecurityContext
		if psc == nil {
			psc = &corev1.PodSecurityContext{}
		}
		if spec.HostNetwork || spec.HostPID || spec.HostIPC {
			c.add(RuleHardening, p.key(), "uses host namespaces")
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			c.add(RuleHardening, p.key(), "mounts a service account token it does not need")
		}
		all := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
		for _, ctr := range all {
			id := p.key() + " container " + ctr.Name
			sc := ctr.SecurityContext
			if sc == nil {
				sc = &corev1.SecurityContext{}
			}
			nonRoot := sc.RunAsNonRoot
			if nonRoot == nil {
				nonRoot = psc.RunAsNonRoot
			}
			if nonRoot == nil || !*nonRoot {
				c.add(RuleHardening, id, "runAsNonRoot is not true")
			}
			uid := sc.RunAsUser
			if uid == nil {
				uid = psc.RunAsUser
			}
			if uid != nil && *uid == 0 {
				c.add(RuleHardening, id, "runs as uid 0")
			}
			if uid == nil {
				c.add(RuleHardening, id, "no numeric runAsUser (the kubelet cannot verify a named USER is non-root)")
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				c.add(RuleHardening, id, "root filesystem is writable")
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				c.add(RuleHardening, id, "allowPrivilegeEscalation is not false")
			}
			if sc.Privileged != nil && *sc.Privileged {
				c.add(RuleHardening, id, "privileged")
			}
			if sc.Capabilities == nil || !dropsAll(sc.Capabilities.Drop) || len(sc.Capabilities.Add) > 0 {
				c.add(RuleHardening, id, "capabilities: must drop ALL and add none")
			}
			seccomp := sc.SeccompProfile
			if seccomp == nil {
				seccomp = psc.SeccompProfile
			}
			if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
				c.add(RuleHardening, id, "seccomp profile is not RuntimeDefault")
			}
			if !mountsTmp(ctr) {
				c.add(RuleHardening, id, "read-only root filesystem needs a writable /tmp (emptyDir)")
			}
		}
	}
}

func dropsAll(caps []corev1.Capability) bool {
	for _, c := range caps {
		if c == "ALL" {
			return true
		}
	}
	return false
}

func mountsTmp(ctr corev1.Container) bool {
	for _, m := range ctr.VolumeMounts {
		if m.MountPath == "/tmp" {
			return true
		}
	}
	// a container that mounts only read-only config (the snapshot job) writes nothing
	return ctr.Name == "snapshot"
}

// grace checks terminationGracePeriodSeconds > drain delay + shutdown timeout of our services, taking the
// effective values from the container env or its ConfigMaps (<PREFIX>_DRAIN_DELAY, <PREFIX>_SHUTDOWN_TIMEOUT).
func (c *checker) grace() {
	for _, p := range c.pods {
		if p.kind != "Deployment" {
			continue
		}
		for _, ctr := range p.tpl.Spec.Containers {
			if !strings.HasPrefix(ctr.Image, "lookalike/") {
				continue
			}
			env := c.effectiveEnv(p.ns, ctr)
			drain, shutdown := DefaultDrain, DefaultShutdown
			var haveDrain, haveShutdown bool
			for k := range env {
				haveDrain = haveDrain || strings.HasSuffix(k, "_DRAIN_DELAY")
				haveShutdown = haveShutdown || strings.HasSuffix(k, "_SHUTDOWN_TIMEOUT")
			}
			if !haveDrain || !haveShutdown {
				// a pod's grace period is read beside the values that bound it
				c.add(RuleGrace, p.key(), "set <SVC>_DRAIN_DELAY and <SVC>_SHUTDOWN_TIMEOUT explicitly so the grace period can be checked")
			}
			for k, v := range env {
				d, err := time.ParseDuration(v)
				switch {
				case strings.HasSuffix(k, "_DRAIN_DELAY") && err == nil:
					drain = d
				case strings.HasSuffix(k, "_SHUTDOWN_TIMEOUT") && err == nil:
					shutdown = d
				case (strings.HasSuffix(k, "_DRAIN_DELAY") || strings.HasSuffix(k, "_SHUTDOWN_TIMEOUT")) && err != nil:
					c.add(RuleGrace, p.key(), "%s=%q is not a duration", k, v)
				}
			}
			grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
			if p.tpl.Spec.TerminationGracePeriodSeconds != nil {
				grace = *p.tpl.Spec.TerminationGracePeriodSeconds
			}
			if time.Duration(grace)*time.Second <= drain+shutdown {
				c.add(RuleGrace, p.key(), "terminationGracePeriodSeconds %d is not longer than drain %s + shutdown %s", grace, drain, shutdown)
			}
		}
	}
}

// effectiveEnv is the container's environment from envFrom ConfigMaps and env literals (later wins).
func (c *checker) effectiveEnv(ns string, ctr corev1.Container) map[string]string {
	env := map[string]string{}
	for _, ef := range ctr.EnvFrom {
		if ef.ConfigMapRef == nil {
			continue
		}
		if o := c.find("ConfigMap", ns, ef.ConfigMapRef.Name); o != nil {
			for k, v := range o.Typed.(*corev1.ConfigMap).Data {
				env[ef.Prefix+k] = v
			}
		}
	}
	for _, e := range ctr.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
		}
	}
	return env
}

// references: every ConfigMap, Secret, ServiceAccount and PVC a pod names exists in the variant, or is a
// documented external Secret, or a volume claim template of its StatefulSet.
func (c *checker) references() {
	for _, p := range c.pods {
		spec := &p.tpl.Spec
		if sa := spec.ServiceAccountName; sa != "" && c.find("ServiceAccount", p.ns, sa) == nil {
			c.add(RuleReference, p.key(), "ServiceAccount %s not found", sa)
		}
		need := func(kind, name string) {
			if kind == "Secret" && c.external[name] {
				return
			}
			if c.find(kind, p.ns, name) == nil {
				c.add(RuleReference, p.key(), "%s %s not found", kind, name)
			}
		}
		claimTemplates := map[string]bool{}
		if ss, ok := p.owner.Typed.(*appsv1.StatefulSet); ok {
			for _, vct := range ss.Spec.VolumeClaimTemplates {
				claimTemplates[vct.Name] = true
			}
		}
		volumes := map[string]bool{}
		for _, v := range spec.Volumes {
			volumes[v.Name] = true
			switch {
			case v.ConfigMap != nil:
				need("ConfigMap", v.ConfigMap.Name)
			case v.Secret != nil:
				need("Secret", v.Secret.SecretName)
			}
		}
		all := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
		for _, ctr := range all {
			for _, ef := range ctr.EnvFrom {
				if ef.ConfigMapRef != nil {
					need("ConfigMap", ef.ConfigMapRef.Name)
				}
				if ef.SecretRef != nil {
					need("Secret", ef.SecretRef.Name)
				}
			}
			for _, e := range ctr.Env {
				if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
					need("ConfigMap", e.ValueFrom.ConfigMapKeyRef.Name)
				}
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					need("Secret", e.ValueFrom.SecretKeyRef.Name)
				}
			}
			for _, m := range ctr.VolumeMounts {
				if !volumes[m.Name] && !claimTemplates[m.Name] {
					c.add(RuleReference, p.key(), "container %s mounts unknown volume %s", ctr.Name, m.Name)
				}
			}
		}
	}
}

// networkPolicies: every pod is under a policy for ingress and one for egress, and every pod behind a
// Service is reachable through some policy allowing ingress to it.
func (c *checker) networkPolicies() {
	var nps []*networkingv1.NetworkPolicy
	for _, o := range c.objs {
		if np, ok := o.Typed.(*networkingv1.NetworkPolicy); ok {
			np.Namespace = o.Generic.GetNamespace()
			nps = append(nps, np)
		}
	}
	behindService := map[string]bool{}
	for _, o := range c.objs {
		if s, ok := o.Typed.(*corev1.Service); ok && len(s.Spec.Selector) > 0 {
			for _, p := range c.selectedPods(o.Generic.GetNamespace(), labels.SelectorFromSet(s.Spec.Selector)) {
				behindService[p.key()] = true
			}
		}
	}
	for _, p := range c.pods {
		var ingress, egress, allowsIn bool
		for _, np := range nps {
			sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
			if err != nil || np.Namespace != p.ns || !sel.Matches(labels.Set(p.tpl.Labels)) {
				continue
			}
			for _, t := range np.Spec.PolicyTypes {
				ingress = ingress || t == networkingv1.PolicyTypeIngress
				egress = egress || t == networkingv1.PolicyTypeEgress
			}
			if !sel.Empty() && len(np.Spec.Ingress) > 0 {
				allowsIn = true
			}
		}
		if !ingress {
			c.add(RuleNetworkPolicy, p.key(), "no NetworkPolicy restricts its ingress")
		}
		if !egress {
			c.add(RuleNetworkPolicy, p.key(), "no NetworkPolicy restricts its egress")
		}
		if behindService[p.key()] && !allowsIn {
			c.add(RuleNetworkPolicy, p.key(), "behind a Service but no NetworkPolicy lets anything reach it")
		}
	}
}

// vectorSpaces: a Service must not select pods of two model ids (two vector spaces) unless it says so, and
// an embedder's model-id annotation must be the model its configuration serves.
func (c *checker) vectorSpaces() {
	for _, p := range c.pods {
		if p.tpl.Labels["app.kubernetes.io/component"] != "embedder" {
			continue
		}
		id := p.tpl.Annotations[ModelIDAnnotation]
		if id == "" {
			c.add(RuleVectorSpace, p.key(), "embedder pods without the %s annotation", ModelIDAnnotation)
		}
		for _, ctr := range p.tpl.Spec.Containers {
			env := c.effectiveEnv(p.ns, ctr)
			if env["EMBED_DEFAULT_MODEL"] != id || env["EMBED_MODELS"] != id {
				c.add(RuleVectorSpace, p.key(), "annotated model %q but configured EMBED_MODELS=%q EMBED_DEFAULT_MODEL=%q",
					id, env["EMBED_MODELS"], env["EMBED_DEFAULT_MODEL"])
			}
		}
	}
	for _, o := range c.objs {
		s, ok := o.Typed.(*corev1.Service)
		if !ok || len(s.Spec.Selector) == 0 {
			continue
		}
		ids := map[string][]string{}
		for _, p := range c.selectedPods(o.Generic.GetNamespace(), labels.SelectorFromSet(s.Spec.Selector)) {
			if id := p.tpl.Annotations[ModelIDAnnotation]; id != "" {
				ids[id] = append(ids[id], p.key())
			}
		}
		if len(ids) > 1 && strings.TrimSpace(s.Annotations[MixedModelsAnnotation]) == "" {
			var list []string
			for id, pods := range ids {
				list = append(list, id+" ("+strings.Join(pods, ", ")+")")
			}
			sort.Strings(list)
			c.add(RuleVectorSpace, o.Key(), "one Service mixes vector spaces: %s", strings.Join(list, "; "))
		}
		if want := s.Annotations[ModelIDAnnotation]; want != "" {
			for id := range ids {
				if id != want {
					c.add(RuleVectorSpace, o.Key(), "annotated model %s but selects pods of model %s", want, id)
				}
			}
		}
	}
}

// gpu: when any embedder asks for a GPU, every embedder does, on GPU nodes, with the CUDA provider.
func (c *checker) gpu() {
	var embedders []podTemplate
	anyGPU := false
	for _, p := range c.pods {
		if p.tpl.Labels["app.kubernetes.io/component"] == "embedder" {
			embedders = append(embedders, p)
			if wantsGPU(p.tpl) {
				anyGPU = true
			}
		}
	}
	if !anyGPU {
		return
	}
	for _, p := range embedders {
		if !wantsGPU(p.tpl) {
			c.add(RuleGPU, p.key(), "other embedders use GPUs but this one does not (component order?)")
			continue
		}
		if len(p.tpl.Spec.NodeSelector) == 0 || len(p.tpl.Spec.Tolerations) == 0 {
			c.add(RuleGPU, p.key(), "GPU pod without nodeSelector and tolerations")
		}
		for _, ctr := range p.tpl.Spec.Containers {
			if env := c.effectiveEnv(p.ns, ctr); env["EMBED_PROVIDER"] != "cuda" && env["EMBED_PROVIDER"] != "tensorrt" {
				c.add(RuleGPU, p.key(), "GPU pod with EMBED_PROVIDER=%q", env["EMBED_PROVIDER"])
			}
			if !strings.Contains(ctr.Image, "-gpu") {
				c.add(RuleGPU, p.key(), "GPU pod with the CPU image %s", ctr.Image)
			}
		}
	}
}

func wantsGPU(tpl *corev1.PodTemplateSpec) bool {
	for _, ctr := range tpl.Spec.Containers {
		if _, ok := ctr.Resources.Limits["nvidia.com/gpu"]; ok {
			return true
		}
	}
	return false
}

// availability: every long-lived workload has a PodDisruptionBudget; a Deployment either has an HPA (and
// leaves replicas to it) or a fixed replica count.
func (c *checker) availability() {
	for _, p := range c.pods {
		if !p.longLived {
			continue
		}
		hasPDB := false
		for _, o := range c.objs {
			if pdb, ok := o.Typed.(*policyv1.PodDisruptionBudget); ok && o.Generic.GetNamespace() == p.ns {
				if sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector); err == nil && sel.Matches(labels.Set(p.tpl.Labels)) {
					hasPDB = true
				}
			}
		}
		if !hasPDB {
			c.add(RuleAvailability, p.key(), "no PodDisruptionBudget")
		}
		d, ok := p.owner.Typed.(*appsv1.Deployment)
		if !ok {
			continue
		}
		var hpa *autoscalingv2.HorizontalPodAutoscaler
		for _, o := range c.objs {
			if h, ok := o.Typed.(*autoscalingv2.HorizontalPodAutoscaler); ok && o.Generic.GetNamespace() == p.ns &&
				h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == p.name {
				hpa = h
			}
		}
		switch {
		case hpa != nil && d.Spec.Replicas != nil:
			c.add(RuleAvailability, p.key(), "has an HPA but also sets replicas=%d (every apply would fight the HPA)", *d.Spec.Replicas)
		case hpa == nil && d.Spec.Replicas == nil:
			c.add(RuleAvailability, p.key(), "neither an HPA nor a replica count")
		case hpa != nil && hpa.Spec.MinReplicas != nil && *hpa.Spec.MinReplicas > hpa.Spec.MaxReplicas:
			c.add(RuleAvailability, p.key(), "HPA minReplicas > maxReplicas")
		}
	}
}

// Format renders violations one per line for test output.
func Format(vs []Violation) string {
	var b strings.Builder
	for _, v := range vs {
		b.WriteString(v.String())
		b.WriteString("\n")
	}
	return b.String() + strconv.Itoa(len(vs)) + " violation(s)"
}
