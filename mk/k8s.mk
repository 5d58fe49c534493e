# Kubernetes manifests, container images and their checks (issue 9). Included by the top Makefile.
#   make test-manifests     level (a): render every overlay x component in process, strict decode, our rules,
#                           and the static Dockerfile checks (seconds once compiled; no binaries needed)
#   make check-dockerfiles  the static Dockerfile checks alone
#   make setup-k8s          build etcd, kube-apiserver, kubectl, kube-controller-manager, kube-scheduler
#                           and kwok from the Go module proxy into $(K8S_CACHE) (once; seconds when cached)
#   make test-k8s           levels (b) and (c): server-side dry-run against kube-apiserver, refusals of
#                           broken manifests, rollout simulation with controllers, scheduler and kwok nodes
#   make images             build the images with docker or podman when one is installed
REPO ?= $(CURDIR)
SHARED ?= $(REPO)/../shared
GO ?= go
K8S_VERSION ?= v1.37.2
ETCD_VERSION ?= v3.7.3
KWOK_VERSION ?= v0.8.0
K8S_CACHE ?= $(HOME)/.cache/lookalike-k8s
IMAGE_TAG ?= 0.1.0
IMAGE_PREFIX ?= lookalike/
K8S_ENV = GOWORK=off GOFLAGS=-buildvcs=false LOOKALIKE_K8S_CACHE=$(K8S_CACHE) \
	K8S_VERSION=$(K8S_VERSION) ETCD_VERSION=$(ETCD_VERSION) KWOK_VERSION=$(KWOK_VERSION)

.PHONY: test-manifests check-dockerfiles setup-k8s test-k8s images

test-manifests:
	cd $(REPO)/manifests && $(K8S_ENV) $(GO) vet ./... && $(K8S_ENV) $(GO) test -count=1 ./...

check-dockerfiles:
	cd $(REPO)/manifests && $(K8S_ENV) $(GO) run ./cmd/check-dockerfiles -root $(REPO)

setup-k8s:
	$(K8S_ENV) GO=$(GO) bash $(REPO)/hack/k8s/build-binaries.sh all

test-k8s: setup-k8s
	cd $(REPO)/manifests && $(K8S_ENV) KUBEBUILDER_ASSETS=$(K8S_CACHE)/assets-$(K8S_VERSION) \
		$(GO) test -tags k8s -count=1 -p 1 -timeout 30m -v ./clustertest/

# `make test` runs every test-*-extra: level (a) is fast, so it runs there too
.PHONY: test-manifests-extra
test-manifests-extra: test-manifests

# name:dockerfile pairs; embed gets the model folder as a named build context (no download)
IMAGES = gateway:gateway/Dockerfile preprocess:preprocess/Dockerfile search:search/Dockerfile \
	indexer:indexer/Dockerfile embed:embed/Dockerfile embed-gpu:embed/Dockerfile.gpu
CONTAINER_ENGINE ?= $(shell command -v docker 2>/dev/null || command -v podman 2>/dev/null)

# a usable engine: podman, or docker with a reachable daemon and buildx (--build-context needs BuildKit)
images: check-dockerfiles
	@engine="$(CONTAINER_ENGINE)"; build=""; \
	case "$$engine" in \
		*podman) $$engine info >/dev/null 2>&1 && build="$$engine build" ;; \
		*docker) $$engine info >/dev/null 2>&1 && $$engine buildx version >/dev/null 2>&1 && build="$$engine buildx build --load" ;; \
	esac; \
	if [ -z "$$build" ]; then \
		echo "images: no usable container engine here (docker with a daemon and buildx, or podman); Dockerfiles checked statically only"; exit 0; fi; \
	commit=$$(git -C $(REPO) rev-parse HEAD 2>/dev/null || echo unknown); \
	for pair in $(IMAGES); do name=$${pair%%:*}; file=$${pair#*:}; \
		echo "== $(IMAGE_PREFIX)$$name:$(IMAGE_TAG) from $$file"; \
		$$build -f $(REPO)/$$file --build-context models=$(SHARED)/models \
			--build-arg COMMIT=$$commit -t $(IMAGE_PREFIX)$$name:$(IMAGE_TAG) $(REPO) || exit 1; \
	done
