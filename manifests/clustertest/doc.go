// Package clustertest holds the checks against a real control plane, built with `-tags k8s`:
//
//   - level (b), TestServerSideDryRun*: etcd + kube-apiserver (envtest) accept every overlay and
//     component combination with server-side apply, dry-run and strict field validation, with no warning;
//     TestAPIServerRefusesBrokenManifests shows the server refuses deliberately broken ones;
//   - level (c), TestRolloutSimulation: with kube-controller-manager, kube-scheduler and kwok fake nodes
//     the dev overlay rolls out; then changing only embed's image rolls only embed's pods; then the
//     embed-canary component comes up beside it without mixing vector spaces behind a Service.
//
// The binaries come from hack/k8s/build-binaries.sh (make setup-k8s); run with make test-k8s.
package clustertest
