# PHANTOM — the two commands a user needs are `make run` and `make test`.

CARGO ?= cargo

.PHONY: help run test lint chart-lint k8s image bench fmt build release clean

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

run: ## Build and run the whole system (`phantom up`) on embedded defaults
	$(CARGO) run --release --locked -p phantom -- up

test: ## Run every test, against throwaway PostgreSQL and Redis started (and stopped) here
	tests/support/with-backends.sh $(CARGO) test --workspace --all-targets --locked

lint: ## Formatting, clippy, buf lint and the Helm chart, as CI checks them
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	proto/lint.sh
	tests/support/module-cycles.py
	deploy/check-chart.sh

chart-lint: ## The Helm chart: lint, render, validate (Kubernetes 1.33), checkov, k8s/ drift
	deploy/check-chart.sh

k8s: ## Render the plain manifests in k8s/ from the Helm chart (k8s/values.yaml)
	deploy/render-k8s.sh

IMAGE ?= phantom:dev
image: ## Build the container image (needs a Docker engine; CI has none, so CI never builds it)
	docker build -f deploy/Dockerfile -t $(IMAGE) .

bench: ## Benchmarks: each layer (criterion), every suite of the runner (saved as `latest`), the attack replay
	$(CARGO) bench --locked -p phantom-layers --bench layers
	$(CARGO) run --release --locked -p phantom -- bench --all --save latest --report bench-results/latest.html
	$(CARGO) run --release --locked -p phantom -- bench attacks

fmt: ## Format the code
	$(CARGO) fmt --all

build: ## Debug build of everything
	$(CARGO) build --workspace --locked

release: ## Release build of the phantom binary (target/release/phantom)
	$(CARGO) build --release --locked -p phantom

clean: ## Remove build output and the embedded database
	$(CARGO) clean
	rm -rf data
