# indexer: bulk-indexing benchmark and extra checks (included by the top Makefile).

INDEX_BENCH_N     ?= 2000
INDEX_BENCH_FLAGS ?=

.PHONY: bench-index test-indexer-extra

bench-index: ## indexer: index ~2,000 generated images through the real services; images/s vs embed capacity alone (goal >= 0.9x)
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	echo "building preprocess, embed, search into $$tmp/bin"; \
	cd $(REPO) && $(GO) build -o "$$tmp/bin/" ./preprocess/cmd/preprocess ./embed/cmd/embed ./search/cmd/search; \
	cd $(REPO)/indexer && ONNXRUNTIME_LIB=$(ORT_LIB) MODEL_DIR=$(MODEL_DIR) LOOKALIKE_SHARED=$(SHARED) \
	  $(GO) run ./cmd/index-bench --bin-dir="$$tmp/bin" --repo=$(REPO) --shared=$(SHARED) --n=$(INDEX_BENCH_N) $(INDEX_BENCH_FLAGS)

test-indexer-extra: ## indexer: race detector on the runner, CLI kill test and admin API; fuzz of the catalog parsers (execution counts: golang/go#75804)
	cd $(REPO)/indexer && $(GO) test -count=1 -race -skip TestReferenceCatalog ./internal/job/ ./internal/admin/ ./cmd/indexer/
	cd $(REPO)/shared && $(GO) test -run '^$$' -fuzz '^FuzzParseJSONLine$$' -fuzztime 100000x -parallel 1 ./catalog/
	cd $(REPO)/shared && $(GO) test -run '^$$' -fuzz '^FuzzReaderCSV$$' -fuzztime 80000x -parallel 1 ./catalog/
