# preprocess: setup, benchmark and extra checks (included by the top Makefile).

PREPROCESS_BENCH_FLAGS ?= -rounds 3
# Fuzz budgets in make test are execution counts (Nx), not durations: go1.26's fuzz coordinator can
# fail a duration-bounded run with a bare "context deadline exceeded" at the deadline on a loaded
# machine (golang/go#75804, fixed in go1.27); a count has no deadline to race.
PREPROCESS_FUZZTIME    ?= 200000x
PREPROCESS_BENCH_BIN   := $(CACHE)/bin/preprocess-bench

.PHONY: setup-preprocess bench-preprocess test-preprocess-extra fuzz-preprocess-long

setup-preprocess: ## preprocess: install libjpeg-turbo headers (libturbojpeg0-dev, libjpeg62-turbo-dev) and vipsthumbnail (libvips-tools), when missing
	@if [ -f /usr/include/turbojpeg.h ] && [ -f /usr/include/jpeglib.h ] && command -v vipsthumbnail >/dev/null; then \
	  echo "preprocess: libturbojpeg0-dev, libjpeg62-turbo-dev and libvips-tools present"; \
	else \
	  SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libturbojpeg0-dev libjpeg62-turbo-dev libvips-tools; \
	fi

bench-preprocess: ## preprocess: img/s on one core vs vipsthumbnail (ratios all/JPEG/PNG) and tensor error vs full decode + Lanczos3
	@mkdir -p $(dir $(PREPROCESS_BENCH_BIN))
	cd $(REPO)/preprocess && $(GO) build -o $(PREPROCESS_BENCH_BIN) ./cmd/preprocess-bench
	cd $(REPO)/preprocess && GOMAXPROCS=1 VIPS_CONCURRENCY=1 MALLOC_ARENA_MAX=1 \
	  $$(command -v taskset >/dev/null && echo taskset -c 0) \
	  $(PREPROCESS_BENCH_BIN) -images $(SHARED)/catalog/images $(PREPROCESS_BENCH_FLAGS)

test-preprocess-extra: ## preprocess: fuzz image decode for PREPROCESS_FUZZTIME (200000x) from the committed seeds
	cd $(REPO)/preprocess && $(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(PREPROCESS_FUZZTIME) ./internal/imagedecode/

fuzz-preprocess-long: ## preprocess: the same fuzz run for 30 minutes (a duration: may end in go1.26's spurious deadline error)
	$(MAKE) test-preprocess-extra PREPROCESS_FUZZTIME=30m
