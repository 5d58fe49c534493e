# shared: extra checks (included by the top Makefile).

# An execution count, not a duration (see the note in mk/preprocess.mk: golang/go#75804).
SHARED_FUZZTIME ?= 300000x

.PHONY: test-shared-extra
test-shared-extra: ## shared: fuzz the tensor wire format decoder for SHARED_FUZZTIME (300000x) from its seeds
	cd $(REPO)/shared && $(GO) test -run '^$$' -fuzz '^FuzzUnmarshal$$' -fuzztime $(SHARED_FUZZTIME) ./contract/tensorv1/
