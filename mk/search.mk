# search: setup, benchmark and extra checks (included by the top Makefile).

SEARCH_BENCH_N     ?= 100000
SEARCH_BENCH_FLAGS ?=

.PHONY: setup-search bench-search bench-search-1m test-search-extra

setup-search: ## search: install hnswlib headers (libhnswlib-dev) and g++ for the embedded ANN index
	@if [ -f /usr/include/hnswlib/hnswlib.h ] && command -v g++ >/dev/null; then \
	  echo "search: hnswlib headers and g++ present"; \
	else \
	  SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libhnswlib-dev g++; \
	fi

bench-search: ## search: embedded index build time, RSS, QPS/core, recall@10 vs exact (SEARCH_BENCH_N=1000000 for 1M)
	cd $(REPO)/search && $(GO) run ./cmd/search-bench -n $(SEARCH_BENCH_N) $(SEARCH_BENCH_FLAGS)

bench-search-1m: ## search: the same on 1M vectors (hours on 2 cores; ~11 GiB RAM)
	$(MAKE) bench-search SEARCH_BENCH_N=1000000

test-search-extra: ## search: pure-Go build (CGO_ENABLED=0, exact scan) and the race detector on the embedded store
	cd $(REPO)/search && CGO_ENABLED=0 $(GO) test -count=1 ./...
	cd $(REPO)/search && $(GO) test -count=1 -race ./internal/embedded/ ./internal/service/ ./internal/httpapi/
