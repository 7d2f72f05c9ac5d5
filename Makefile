# jitgate — run `make` for the list of targets.
SHELL := /bin/bash
GO    ?= go
BIN   := bin/jitgate
PKGS  := ./...

.DEFAULT_GOAL := help

.PHONY: help
help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/jitgate
	$(GO) build -o $(BIN) ./cmd/jitgate

.PHONY: deps
deps: ## install missing Debian packages (as root) for tests and demo
	scripts/ensure-deps.sh test

.PHONY: demo
demo: deps build ## run the narrated demo on embedded defaults (local PostgreSQL, dev issuer)
	$(GO) run ./test/demo --bin $(BIN)

.PHONY: test
test: deps ## vet, then every test (unit, adversarial, end-to-end against real servers) with -race
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

.PHONY: test-short
test-short: ## tests without -race (faster while developing)
	$(GO) test -count=1 -timeout 20m $(PKGS)

.PHONY: bench
bench: ## side-by-side benchmarks → bench/RESULTS.md (~15 min; never part of test)
	scripts/bench.sh $(BENCHFLAGS)

.PHONY: bench-quick
bench-quick: ## smoke run of the benchmark harness (1 short round) → bench/RESULTS.md
	scripts/bench.sh --quick $(BENCHFLAGS)

.PHONY: fuzz
fuzz: ## run each fuzz target for FUZZTIME (default 30s)
	scripts/fuzz.sh $${FUZZTIME:-30s}

.PHONY: soak
soak: deps ## load soak: 200 session grants x 60s, each through its own proxy (GRANTS=, DURATION=)
	scripts/soak.sh

.PHONY: lint
lint: ## gofmt and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1)
	$(GO) vet $(PKGS)

.PHONY: clean
clean: ## remove build output and the dev data directory
	rm -rf bin .jitgate-dev

# --- AWS deployment (functions/, terraform/, localstack/) -------------------
TF_PLUGIN_DIR ?= $(shell for d in /*/registry.terraform.io /*/*/registry.terraform.io; do [ -d "$$d/hashicorp/aws" ] && dirname "$$d" && break; done 2>/dev/null)

.PHONY: functions
functions: ## build bin/functions/{api,runner,sweeper}.zip (bootstrap for provided.al2023, cgo, glibc <= 2.34)
	$(GO) run ./functions/mkzip -out bin/functions

.PHONY: tf-validate
tf-validate: ## terraform fmt -check, init (provider mirror) and validate on the module and the LocalStack example
	@command -v terraform >/dev/null || { echo "terraform is not on PATH"; exit 1; }
	@test -n "$(TF_PLUGIN_DIR)" || { echo "no provider mirror found; set TF_PLUGIN_DIR"; exit 1; }
	TF_CLI_CONFIG_FILE=/dev/null terraform fmt -check -recursive -diff terraform
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && cp -r terraform "$$tmp/" && \
	for d in modules/jitgate examples/localstack; do \
	  echo "== $$d"; \
	  (cd "$$tmp/terraform/$$d" && export TF_CLI_CONFIG_FILE=/dev/null && \
	   terraform init -backend=false -input=false -no-color -plugin-dir=$(TF_PLUGIN_DIR) >/dev/null && \
	   terraform validate -no-color) || exit 1; \
	done

.PHONY: localstack-e2e
localstack-e2e: ## AWS-mode end-to-end test against the running LocalStack or localstack/up.sh's moto
	localstack/e2e.sh
