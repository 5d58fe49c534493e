# shared: extra checks (included by the top Makefile).

SHARED_FUZZTIME ?= 10s

.PHONY: test-shared-extra
test-shared-extra: ## shared: fuzz the tensor wire format decoder for SHARED_FUZZTIME (10s) from its seeds
	cd $(REPO)/shared && $(GO) test -run '^$$' -fuzz '^FuzzUnmarshal$$' -fuzztime $(SHARED_FUZZTIME) ./contract/tensorv1/
