# Spread: one entry point for builds and checks. `make test` is what CI runs.
SHELL := /bin/bash
GO ?= go
CACHE ?= $(CURDIR)/.cache
BIN := $(CACHE)/bin
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2

.PHONY: all build test vet fmt-check generate generate-check tools kube-assets

# Test control plane (etcd, kube-apiserver, kube-controller-manager) built from
# hack/kube; the version must match k8s.io/kubernetes in hack/kube/go.mod.
KUBE_VERSION := v1.37.2
SPREAD_KUBE_ASSETS ?= $(CACHE)/kube/$(KUBE_VERSION)

all: build

build:
	$(GO) build -o bin/spread ./cmd/spread

$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(BIN)/protoc-gen-go-grpc:
	GOBIN=$(BIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

tools: $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc

# Regenerates the committed protobuf code (needs protoc: apt-get install protobuf-compiler).
generate: tools
	PATH=$(BIN):$$PATH protoc --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative echo/echo.proto

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi

vet:
	$(GO) vet ./...

# Builds once (~10 min cold), then a no-op while the versioned folder holds the binaries.
kube-assets:
	SPREAD_KUBE_ASSETS=$(SPREAD_KUBE_ASSETS) hack/kube/build.sh

test: fmt-check vet kube-assets
	SPREAD_KUBE_ASSETS=$(SPREAD_KUBE_ASSETS) SPREAD_REQUIRE_KUBE=1 $(GO) test -race -count=1 -timeout 20m ./...
