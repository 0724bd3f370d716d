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

.PHONY: help build test lint bench fuzz docker e2e checkrules checkmetrics

help: ## List the targets.
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

build: ## Build the binary with version information.
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o $(BINARY) .

test: ## Run the whole test suite (race detector on); needs promtool on PATH.
	$(GO) test -race -count=1 ./...

lint: ## gofmt, go vet, and staticcheck when installed.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if command -v staticcheck >/dev/null; then staticcheck ./...; else echo "staticcheck not installed: go install honnef.co/go/tools/cmd/staticcheck@v0.8.2"; fi

e2e: ## End-to-end test: a real Prometheus scraping the exporter, dashboards and rules.
	$(GO) test -race -count=1 -run 'TestEndToEndWithPrometheus|TestAlertRules' -v .

checkrules: ## promtool check rules and promtool test rules on rules/.
	promtool check rules rules/alerts.yml
	cd rules && promtool test rules alerts_test.yml alerts_weekly_test.yml

checkmetrics: build ## Serve --demo and check its /metrics with promtool check metrics.
	@./$(BINARY) --demo --web.listen-address=127.0.0.1:19866 --log.level=warn & pid=$$!; \
	trap 'kill $$pid' EXIT; \
	for i in $$(seq 50); do curl -fs http://127.0.0.1:19866/-/ready >/dev/null && break; sleep 0.1; done; \
	curl -fs http://127.0.0.1:19866/metrics | promtool check metrics

bench: ## Run the benchmarks and the 28-day upstream economy simulation; print them as tables.
	@mkdir -p .build
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./... | tee .build/bench.txt | grep -E '^(Benchmark|ok|FAIL|---)'
	@echo; echo '| benchmark | results |'; echo '| --- | --- |'
	@awk '/^Benchmark/ { r = ""; for (i = 3; i < NF; i += 2) r = r (r == "" ? "" : ", ") $$i " " $$(i+1); \
		sub(/-[0-9]+$$/, "", $$1); print "| " $$1 " | " r " |" }' .build/bench.txt
	@echo
	@$(GO) test -count=1 -run '^TestUpstreamEconomy$$' -v . | grep -E '^(\||upstream economy)' 

FUZZTIME ?= 1m
fuzz: ## Fuzz both decoders and the config loader, FUZZTIME each (default 1m).
	$(GO) test ./upstream/wshoto -run '^$$' -fuzz FuzzDecodePage -fuzztime $(FUZZTIME)
	$(GO) test ./upstream/wshoto -run '^$$' -fuzz FuzzNumberAsString -fuzztime $(FUZZTIME)
	$(GO) test ./upstream/wechat -run '^$$' -fuzz FuzzDecodeRetain -fuzztime $(FUZZTIME)
	$(GO) test ./config -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME)

docker: ## Build the container image (needs a Docker engine).
	docker build -t $(BINARY):$(VERSION) .
