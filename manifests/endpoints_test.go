package manifests_test

import (
	"net/url"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/lookalike-dev/lookalike/manifests/internal/render"
)

// TestGatewayReachesPodsAndMetricsStayInternal: in every variant the
// gateway's downstream URLs name headless Services (one record per pod, for
// its per-pod breakers) that exist and serve the URL's port; each service's
// internal listener (metrics, version, readiness reasons) is a pod port that
// Prometheus scrapes by annotation, no Service exposes and the Ingress
// cannot route.
func TestGatewayReachesPodsAndMetricsStayInternal(t *testing.T) {
	tree := loadTree(t)
	for _, v := range render.AllVariants() {
		t.Run(v.Name(), func(t *testing.T) {
			objs, err := tree.Render(v)
			if err != nil {
				t.Fatal(err)
			}
			services := map[string]*corev1.Service{}
			configs := map[string]map[string]string{}
			var deps []*appsv1.Deployment
			var ingresses []*networkingv1.Ingress
			for _, o := range objs {
				switch x := o.Typed.(type) {
				case *corev1.Service:
					services[x.Name] = x
				case *corev1.ConfigMap:
					configs[x.Name] = x.Data
				case *appsv1.Deployment:
					deps = append(deps, x)
				case *networkingv1.Ingress:
					ingresses = append(ingresses, x)
				}
			}
			gw := map[string]string{}
			for name, data := range configs {
				if strings.HasPrefix(name, "gateway-config") {
					gw = data
				}
			}
			urls := 0
			for _, k := range []string{"PREPROCESS_URLS", "EMBED_URLS", "SEARCH_URLS", "CANARY_EMBED_URLS"} {
				for _, raw := range strings.Split(gw[k], ",") {
					if raw == "" {
						continue
					}
					urls++
					rest, ok := strings.CutPrefix(raw, "dns+")
					if !ok {
						t.Errorf("%s=%q: not a headless Service (dns+ URL)", k, raw)
						continue
					}
					u, err := url.Parse(rest)
					if err != nil {
						t.Errorf("%s=%q: %v", k, raw, err)
						continue
					}
					svc := services[u.Hostname()]
					if svc == nil || svc.Spec.ClusterIP != corev1.ClusterIPNone {
						t.Errorf("%s=%q: no headless Service %s", k, raw, u.Hostname())
						continue
					}
					port, _ := strconv.Atoi(u.Port())
					found := false
					for _, p := range svc.Spec.Ports {
						found = found || int(p.Port) == port
					}
					if !found {
						t.Errorf("%s=%q: Service %s has no port %d", k, raw, svc.Name, port)
					}
				}
			}
			if len(gw) > 0 && urls < 3 {
				t.Errorf("gateway config names %d downstream URLs, want at least 3", urls)
			}
			for _, svc := range services {
				for _, p := range svc.Spec.Ports {
					if p.Port == 9090 || p.TargetPort.String() == "metrics" || p.TargetPort.IntValue() == 9090 {
						t.Errorf("Service %s exposes the internal listener (port %s)", svc.Name, p.Name)
					}
				}
			}
			for _, ing := range ingresses {
				for _, r := range ing.Spec.Rules {
					if r.HTTP == nil {
						continue
					}
					for _, p := range r.HTTP.Paths {
						if b := p.Backend.Service; b != nil && (b.Port.Name == "metrics" || b.Port.Number == 9090) {
							t.Errorf("Ingress %s routes to the internal listener", ing.Name)
						}
					}
				}
			}
			for _, d := range deps {
				tpl := d.Spec.Template
				if tpl.Annotations["prometheus.io/scrape"] != "true" || tpl.Annotations["prometheus.io/port"] != "9090" {
					t.Errorf("Deployment %s: pods not annotated for scraping on 9090", d.Name)
				}
				for _, c := range tpl.Spec.Containers {
					has := false
					for _, p := range c.Ports {
						has = has || (p.Name == "metrics" && p.ContainerPort == 9090)
					}
					addr := ""
					for _, ef := range c.EnvFrom {
						if ef.ConfigMapRef == nil {
							continue
						}
						for name, data := range configs {
							if name == ef.ConfigMapRef.Name {
								for k, val := range data {
									if strings.HasSuffix(k, "_METRICS_ADDR") {
										addr = val
									}
								}
							}
						}
					}
					if !has || addr != ":9090" {
						t.Errorf("Deployment %s container %s: metrics port %v, *_METRICS_ADDR %q; want port metrics 9090 and :9090", d.Name, c.Name, has, addr)
					}
				}
			}
		})
	}
}
