// Package manifests holds the Kubernetes manifests of Lookalike (kustomize bases, components, overlays)
// and their checks: level (a) runs with `go test ./...` (GOWORK=off); levels (b) and (c) need a control
// plane and run with `go test -tags k8s ./clustertest` (make test-k8s).
package manifests
