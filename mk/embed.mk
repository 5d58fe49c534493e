# embed: benchmark, extra checks, calibration and code generation (included by the top Makefile).

EMBED_BENCH_FLAGS  ?= -rounds 3 -duration 6s
EMBED_BENCH_BIN    := $(CACHE)/bin/embed-bench
EMBED_CENTRED      ?= mobilenetv2-int8-centered-v1
PREPROCESS_URL     ?= http://127.0.0.1:8081
PROTOC_GEN_GO      := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12

.PHONY: bench-embed test-embed-extra calibrate-embed gen-embed-onnx

bench-embed: ## embed: service throughput vs a bare onnxruntime_go session (same run, model, batch, threads): ratios at batch 32 and 32 single-image clients
	@mkdir -p $(dir $(EMBED_BENCH_BIN))
	cd $(REPO)/embed && $(GO) build -o $(EMBED_BENCH_BIN) ./cmd/embed-bench
	cd $(REPO) && $(EMBED_BENCH_BIN) -ort-lib $(ORT_LIB) -model-dir $(MODEL_DIR) -models-dir $(REPO)/embed/models $(EMBED_BENCH_FLAGS)

test-embed-extra: ## embed: batcher, registry and API tests again under the race detector
	cd $(REPO)/embed && $(GO) test -race -count=1 ./internal/batcher/ ./internal/registry/ ./internal/httpapi/

calibrate-embed: ## embed: recompute the centring mean of EMBED_CENTRED over the catalog images (needs preprocess at PREPROCESS_URL)
	cd $(REPO) && $(GO) run ./embed/cmd/embed-calibrate -ort-lib $(ORT_LIB) -model-dir $(MODEL_DIR) \
	  -models-dir $(REPO)/embed/models -model $(EMBED_CENTRED) -images $(SHARED)/catalog/images \
	  -preprocess-url $(PREPROCESS_URL) -out $(REPO)/embed/models/$(EMBED_CENTRED).mean.lkt

gen-embed-onnx: ## embed: regenerate the ONNX protobuf subset (installs protobuf-compiler and protoc-gen-go when missing)
	@command -v protoc >/dev/null || { SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq protobuf-compiler; }
	GOFLAGS= $(GO) install $(PROTOC_GEN_GO)
	cd $(REPO)/embed/internal/onnxgraph && protoc --plugin=protoc-gen-go=$$($(GO) env GOPATH)/bin/protoc-gen-go \
	  --go_out=. --go_opt=paths=source_relative onnx.proto
