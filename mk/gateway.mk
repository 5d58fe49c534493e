# Gateway targets (included by the top Makefile).

.PHONY: setup-gateway test-gateway-extra bench-gateway screenshot-gateway

setup-gateway: ## Install headless Chromium for the gateway's browser test (apt, when missing)
	@if command -v chromium >/dev/null 2>&1; then chromium --version 2>/dev/null | head -1; \
	else echo "installing chromium (apt)"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null && chromium --version 2>/dev/null | head -1; fi

test-gateway-extra: ## Gateway fuzzing, bounded by execution counts (golang/go#75804 makes durations flaky), from committed seeds: search request, multipart upload (pooled buffers) and metadata parsers
	cd $(REPO)/gateway && $(GO) test -run '^$$' -fuzz '^FuzzParseSearch$$' -fuzztime 30000x ./internal/httpapi
	cd $(REPO)/gateway && $(GO) test -run '^$$' -fuzz '^FuzzParseMetadata$$' -fuzztime 40000x ./internal/httpapi
	cd $(REPO)/gateway && $(GO) test -run '^$$' -fuzz '^FuzzMultipartForm$$' -fuzztime 20000x ./internal/httpapi

bench-gateway: ## Gateway client overhead: balanced, guarded upstream Doer vs a plain http.Client (ratio pool/plain)
	cd $(REPO)/gateway && $(GO) test -run '^$$' -bench 'PoolOverhead' -benchtime 3000x -count 3 ./internal/upstream

screenshot-gateway: ## Re-take gateway/docs/screenshot.jpg with the browser test (fake downstreams)
	cd $(REPO)/gateway && LOOKALIKE_SCREENSHOT=$(REPO)/gateway/docs/screenshot.jpg $(GO) test -count=1 -run 'TestBrowserSearchAndMoreLikeThis' ./internal/web
