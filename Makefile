# wechat_retention_exporter

GO        ?= go
BINARY    ?= wechat_retention_exporter
VERSION   ?= $(shell cat VERSION 2>/dev/null || echo 0.1.0)
REVISION  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
BRANCH    ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)
BUILDDATE ?= $(shell date -u +%Y%m%d-%H:%M:%S)
VPKG      := github.com/prometheus/common/version
LDFLAGS   := -X $(VPKG).Version=$(VERSION) -X $(VPKG).Revision=$(REVISION) \
             -X $(VPKG).Branch=$(BRANCH) -X $(VPKG).BuildUser=$(USER) -X $(VPKG).BuildDate=$(BUILDDATE)

.PHONY: help build test lint bench docker

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## Build the binary with version information.
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o $(BINARY) .

test: ## Run the whole test suite (race detector on); needs promtool on PATH.
	$(GO) test -race -count=1 ./...

lint: ## gofmt, go vet, and staticcheck when installed.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if command -v staticcheck >/dev/null; then staticcheck ./...; else echo "staticcheck not installed: go install honnef.co/go/tools/cmd/staticcheck@v0.8.2"; fi

bench: ## Run the benchmarks.
	$(GO) test -run '^$$' -bench . -benchmem ./...

docker: ## Build the container image (needs a Docker engine).
	docker build -t $(BINARY):$(VERSION) .
