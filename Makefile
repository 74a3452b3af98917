# Spread: one entry point for builds and checks. `make test` is what CI runs.
SHELL := /bin/bash
GO ?= go
CACHE ?= $(CURDIR)/.cache
BIN := $(CACHE)/bin
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2

# The container image (needs docker, podman or buildah; none runs on the CI machines:
# repo_test.go checks the Dockerfile's go build line instead).
IMAGE ?= spread:dev
CONTAINER_BUILD ?= docker build

# Fuzz targets run by `make fuzz` (part of `make test`): package:FuzzName, each for FUZZTIME.
FUZZ_TARGETS := ./internal/frontend:FuzzParseCallQuery ./internal/cluster:FuzzParseQuery \
	./resolver/kubernetes:FuzzParseTarget ./resolver/dnsrefresh:FuzzParseTarget \
	./internal/xds:FuzzParseServiceConfig ./internal/xds:FuzzBootstrap
# A count, not a duration: with a duration, Go 1.26's fuzz coordinator can report a bare
# "context deadline exceeded" failure at the deadline while a worker is busy (golang/go#75804,
# fixed in Go 1.27); a CI run failed on it. 5000 inputs is ~1-12 s per target here.
FUZZTIME ?= 5000x

.PHONY: fuzz all build image static-binary test test-stress vet fmt-check tidy-check generate generate-check tools kube-assets browser-deps browser-test screenshot node-deps interop-test

# Test control plane (etcd, kube-apiserver, kube-controller-manager) built from
# hack/kube; the version must match k8s.io/kubernetes in hack/kube/go.mod.
KUBE_VERSION := v1.37.2
SPREAD_KUBE_ASSETS ?= $(CACHE)/kube/$(KUBE_VERSION)

all: build

build:
	$(GO) build -o bin/spread ./cmd/spread

# make image IMAGE=ghcr.io/you/spread:v1 CONTAINER_BUILD="buildah bud"
image:
	$(CONTAINER_BUILD) -t $(IMAGE) .

$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(BIN)/protoc-gen-go-grpc:
	GOBIN=$(BIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

tools: $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc

# Regenerates the committed protobuf code (needs protoc: apt-get install protobuf-compiler).
generate: tools
	PATH=$(BIN):$$PATH protoc --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative echo/echo.proto

# Fails when the committed generated code differs from what `make generate` produces.
# Without protoc it is skipped, except under CI=true (.ci/run), where that is a failure.
generate-check:
	@if command -v protoc >/dev/null; then \
		$(MAKE) --no-print-directory generate >/dev/null && git diff --exit-code -- echo/ \
		|| { echo "generated code is stale: run make generate"; exit 1; }; \
	elif [ "$$CI" = true ]; then echo "generate-check: protoc not installed (apt-get install protobuf-compiler); CI=true makes this a failure" >&2; exit 1; \
	else echo "generate-check: protoc not installed, skipped (apt-get install protobuf-compiler)"; fi

tidy-check:
	$(GO) mod tidy -diff

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi

vet:
	$(GO) vet ./...

# Each fuzz target for FUZZTIME (seed corpora in each package's testdata/fuzz; a failing
# input is written there too: commit it with the fix). The seeds also run in plain go test.
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg; done

# Builds once (~10 min cold), then a no-op while the versioned folder holds the binaries.
kube-assets:
	SPREAD_KUBE_ASSETS=$(SPREAD_KUBE_ASSETS) hack/kube/build.sh

# Node dependencies of examples/node (@grpc/grpc-js-xds for the xDS interop tests), installed
# with `npm ci` from the committed lockfile into a cache outside git, keyed by the lockfile's
# hash (internal/xdsinterop finds them there). A no-op once installed; skipped without npm.
NODE_DEPS := $(CACHE)/node/$(shell sha256sum examples/node/package-lock.json 2>/dev/null | cut -c1-12)
node-deps:
	@if [ -f $(NODE_DEPS)/node_modules/@grpc/grpc-js-xds/package.json ]; then echo "node-deps: $(NODE_DEPS) present"; \
	elif ! command -v npm >/dev/null; then echo "node-deps: npm not installed; Node interop tests will skip"; else \
		mkdir -p $(NODE_DEPS) && cp examples/node/package.json examples/node/package-lock.json $(NODE_DEPS)/ \
		&& (cd $(NODE_DEPS) && npm ci --ignore-scripts --no-audit --no-fund >/dev/null) \
		&& echo "node-deps: installed into $(NODE_DEPS)"; fi

# The xDS interop matrix alone (grpc-go, grpc-js-xds, C-core); fails instead of skipping
# when Node dependencies or python3-grpcio are missing.
interop-test: kube-assets node-deps
	SPREAD_KUBE_ASSETS=$(SPREAD_KUBE_ASSETS) SPREAD_REQUIRE_KUBE=1 SPREAD_REQUIRE_INTEROP=1 $(GO) test -race -count=1 ./internal/xdsinterop/

# The Dockerfile's build line (CGO_ENABLED=0, -trimpath: a build configuration nothing else
# here uses), run once before the tests so that repo_test.go's check of that line finds the
# build cache warm instead of compiling the whole tree inside a test's time limit.
static-binary:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags="-s -w" -o $(CACHE)/spread-static ./cmd/spread

# Everything: static checks, the control plane and the browser the tests need, then every test.
test: fmt-check vet tidy-check generate-check kube-assets browser-deps node-deps static-binary fuzz
	SPREAD_KUBE_ASSETS=$(SPREAD_KUBE_ASSETS) SPREAD_REQUIRE_KUBE=1 $(GO) test -race -count=1 -timeout 20m ./...

# The whole suite under CPU contention: two bounded busy loops (always killed) hog the CPUs
# while `go test -race -count=1 -cpu 1,2 ./...` runs (hack/test-stress.sh), every real part
# required (control plane, browser, Node and C-core clients), as in CI. A timing assertion that
# only holds on an idle machine fails here. Takes about three times `make test`'s go test.
test-stress: kube-assets browser-deps node-deps static-binary
	SPREAD_KUBE_ASSETS=$(SPREAD_KUBE_ASSETS) SPREAD_REQUIRE_KUBE=1 SPREAD_REQUIRE_BROWSER=1 \
		SPREAD_REQUIRE_INTEROP=1 GO=$(GO) hack/test-stress.sh

# Headless Chromium for the dashboard's browser tests (internal/dashboard, driven by chromedp
# from `go test`). Debian's package; nothing is downloaded besides it. Needs root (CI is root).
CHROMIUM ?= /usr/bin/chromium
browser-deps:
	@if [ -x $(CHROMIUM) ]; then echo "browser-deps: $(CHROMIUM) present"; \
	elif [ "$$(id -u)" != 0 ]; then echo "browser-deps: not root, cannot apt-get install chromium; browser tests will skip"; else \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
		&& echo "browser-deps: installed $$($(CHROMIUM) --version 2>/dev/null)"; fi

# The browser tests alone; they fail (instead of skipping) when Chromium is missing.
browser-test: browser-deps
	SPREAD_REQUIRE_BROWSER=1 $(GO) test -race -count=1 -run Browser ./internal/dashboard

# Regenerates docs/dashboard.png (the README's screenshot) from the browser test.
screenshot: browser-deps
	SPREAD_REQUIRE_BROWSER=1 SPREAD_UPDATE_SCREENSHOT=1 $(GO) test -count=1 -run TestBrowserDemo ./internal/dashboard
