# Lookalike: visual search suite. `make` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

REPO      := $(CURDIR)
SHARED    ?= $(abspath $(REPO)/../shared)
MODEL_DIR ?= $(SHARED)/models
CATALOG   ?= $(SHARED)/catalog/catalog.jsonl
GO        ?= go
BIN       := $(REPO)/bin
CACHE     := $(REPO)/.cache
DATA_DIR  ?= $(REPO)/var

ORT_VERSION := 1.24.1
ORT_DIR     := $(CACHE)/onnxruntime
ORT_LIB     ?= $(ORT_DIR)/libonnxruntime.so.1
MODEL_SHA256 := cc028fe6cae7bc11a4ff53cfc9b79c920e8be65ce33a904ec3e2a8f66d77f95f

STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(CACHE)/bin/staticcheck-$(STATICCHECK_VERSION)

# Modules in go.work (manifests/ is a module of its own, outside the workspace).
MODULES  := shared preprocess embed search gateway indexer e2e
SERVICES := preprocess embed search gateway

COMMIT  := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.commit=$(COMMIT)

export GOTOOLCHAIN := local
export ONNXRUNTIME_LIB := $(ORT_LIB)

# The Go runtime setting every Lookalike process runs with, as the images set it: sysmon stays out
# of deep sleep, so system calls stop waking it ~1,000 times a second (shared/sysmon explains and
# tests it). The suite and the benchmarks run with it, the in-process references included.
RUNTIME_GODEBUG := schedtrace=2147483647
comma := ,
run bench bench-%: export GODEBUG := $(if $(findstring $(RUNTIME_GODEBUG),$(GODEBUG)),$(GODEBUG),$(if $(GODEBUG),$(GODEBUG)$(comma))$(RUNTIME_GODEBUG))
export MODEL_DIR
export LOOKALIKE_SHARED := $(SHARED)

# Per-area targets (bench-*, setup-*, test-*-extra) live in mk/*.mk.
-include mk/*.mk
SETUP_TARGETS      := $(filter-out setup-k8s,$(sort $(shell grep -ho '^setup-[a-z0-9-]*:' mk/*.mk 2>/dev/null | tr -d :)))
TEST_EXTRA_TARGETS := $(sort $(shell grep -ho '^test-[a-z0-9-]*-extra:' mk/*.mk 2>/dev/null | tr -d :))

.PHONY: help
help: ## List the targets
	@echo "Lookalike. First time: 'make run' (suite on 127.0.0.1:8080) or 'make test'."
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | sort | awk 'BEGIN{FS=":.*?## "}{printf "  %-22s %s\n", $$1, $$2}'

.PHONY: setup setup-ort setup-model
setup: setup-ort setup-model $(SETUP_TARGETS) ## Fetch ONNX Runtime, check the model, install the Debian packages the fast paths need (when missing)
	@echo "setup done: ORT $(ORT_LIB), models $(MODEL_DIR)"

setup-ort: $(ORT_LIB) ## Fetch the ONNX Runtime CPU library (npm pack onnxruntime-node@$(ORT_VERSION))

$(ORT_LIB):
	@command -v npm >/dev/null || { echo "npm is needed to fetch ONNX Runtime (apt-get install npm)"; exit 1; }
	mkdir -p $(ORT_DIR)
	cd $(ORT_DIR) && npm pack --silent onnxruntime-node@$(ORT_VERSION) >/dev/null \
	  && tar xzf onnxruntime-node-$(ORT_VERSION).tgz package/bin/napi-v6/linux/x64/libonnxruntime.so.1 \
	  && mv package/bin/napi-v6/linux/x64/libonnxruntime.so.1 $(ORT_LIB).tmp && mv $(ORT_LIB).tmp $(ORT_LIB) \
	  && rm -rf package onnxruntime-node-$(ORT_VERSION).tgz
	@echo "ONNX Runtime $(ORT_VERSION) CPU library at $(ORT_LIB)"

setup-model: ## Check the model file in MODEL_DIR (default ../shared/models)
	@test -f $(MODEL_DIR)/mobilenetv2-12-int8.onnx || { echo "model not found in MODEL_DIR=$(MODEL_DIR)."; \
	  echo "Download it: curl -L -o \$$MODEL_DIR/mobilenetv2-12-int8.onnx https://github.com/onnx/models/raw/main/validated/vision/classification/mobilenet/model/mobilenetv2-12-int8.onnx"; exit 1; }
	@echo "$(MODEL_SHA256)  $(MODEL_DIR)/mobilenetv2-12-int8.onnx" | sha256sum -c --quiet && echo "model ok: $(MODEL_DIR)/mobilenetv2-12-int8.onnx"

.PHONY: build
build: ## Build the service binaries and the indexer into bin/
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./preprocess/cmd/preprocess ./embed/cmd/embed ./search/cmd/search ./gateway/cmd/gateway ./indexer/cmd/indexer

.PHONY: test test-unit test-modules
test: setup test-unit test-modules $(TEST_EXTRA_TARGETS) ## Run every test (unit, end-to-end, per-module GOWORK=off + CGO_ENABLED=0, fuzz seeds)
	@echo "all tests passed"

test-unit: ## go test ./... in every workspace module (includes the end-to-end tests)
	@set -e; for m in $(MODULES); do echo "== go test $$m"; (cd $$m && $(GO) test -count=1 -timeout 20m ./...); done

test-modules: ## Each module alone: GOWORK=off, CGO_ENABLED=0, build + vet + short tests
	@set -e; for m in $(MODULES); do echo "== GOWORK=off CGO_ENABLED=0 $$m"; \
	  (cd $$m && GOWORK=off CGO_ENABLED=0 $(GO) build ./... && GOWORK=off CGO_ENABLED=0 $(GO) vet ./... && \
	   GOWORK=off CGO_ENABLED=0 $(GO) test -count=1 -short -timeout 10m ./...); done

.PHONY: lint
lint: $(STATICCHECK) ## go vet and staticcheck ($(STATICCHECK_VERSION)) on every module
	@set -e; for m in $(MODULES); do echo "== lint $$m"; (cd $$m && $(GO) vet ./... && $(STATICCHECK) ./...); done
	@test -z "$$(gofmt -l $(MODULES) manifests 2>/dev/null)" || { gofmt -l $(MODULES) manifests; echo "gofmt needed"; exit 1; }

$(STATICCHECK):
	mkdir -p $(CACHE)/bin
	GOBIN=$(CACHE)/bin $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(CACHE)/bin/staticcheck $@

.PHONY: run
run: setup build ## Start the suite on 127.0.0.1:8080 with the demo catalog (Ctrl-C stops it)
	@BIN=$(BIN) DATA_DIR=$(DATA_DIR) CATALOG='$(CATALOG)' MODEL_DIR=$(MODEL_DIR) ONNXRUNTIME_LIB=$(ORT_LIB) \
	  GATEWAY_ADDR=$${GATEWAY_ADDR:-127.0.0.1:8080} ./hack/run.sh

.PHONY: bench bench-e2e
BENCH_OUT      ?= $(REPO)/bench-out
BENCH_STAGES   ?= preprocess embed search index e2e
BENCH_SEARCH_N ?= 20000
bench: setup ## Every stage benchmark, then one report: bench-report.md and bench-report.json (profiles in bench-out/profiles)
	@rm -rf $(BENCH_OUT); mkdir -p $(BENCH_OUT)
	@for st in $(BENCH_STAGES); do echo "== bench-$$st"; \
	  $(MAKE) --no-print-directory bench-$$st SEARCH_BENCH_N=$(BENCH_SEARCH_N) BENCH_PROFILES=$(BENCH_OUT)/profiles 2>&1 | tee $(BENCH_OUT)/$$st.log | grep -v '^{"time"' ; done
	cd $(REPO)/e2e && $(GO) run ./cmd/bench-report -logs $(BENCH_OUT) -md $(REPO)/bench-report.md -json $(REPO)/bench-report.json

BENCH_PROFILES ?=
bench-e2e: setup-ort setup-model ## End to end: gateway uploads at rising concurrency vs the same stages in one process (BENCH_PROFILES=dir saves pprof)
	cd $(REPO)/e2e && MALLOC_ARENA_MAX=1 $(GO) run ./cmd/bench-e2e $(if $(BENCH_PROFILES),-profiles $(BENCH_PROFILES))

.PHONY: soak
SOAK_DURATION ?= 10m
soak: setup-ort setup-model ## 10 minutes of mixed load; reports RSS and goroutines over time and fails past their bounds (not in CI)
	cd $(REPO)/e2e && $(GO) run ./cmd/soak -duration $(SOAK_DURATION)

.PHONY: clean
clean: ## Remove build outputs and local data (keeps the ORT cache)
	rm -rf $(BIN) $(DATA_DIR)
