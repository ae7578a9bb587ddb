# SecureVault: every target installs what it needs (idempotently) and keeps
# build outputs in a cache outside the repository.
#
#   make run    the data plane on embedded defaults (SQLite, in-process cache)
#               and a local SMTP server (mailpit) whose web page shows sent mail
#   make test   every test: formatting, lints, unit and integration tests
#
# `make help` lists the rest.

SHELL        := /bin/bash
.SHELLFLAGS  := -euo pipefail -c
.DEFAULT_GOAL := help

CACHE_DIR        ?= $(HOME)/.cache/securevault
export CARGO_TARGET_DIR ?= $(CACHE_DIR)/target
export PATH      := $(HOME)/.cargo/bin:$(PATH)

# Where `make health` and `make metrics` look for a running data plane: its
# API, and its metrics listener.
URL ?= http://127.0.0.1:8080
METRICS_URL ?= http://127.0.0.1:9464
# `make cluster-up NODE=real`: a real node (kubelet, containerd) beside the
# kwok ones; NODE=kwok: kwok nodes only; unset: a running cluster keeps what it has.
NODE ?=

# Debian packages: what the tests start for real, and the tools around them.
TEST_PACKAGES  := redis-server postgresql curl prometheus prometheus-alertmanager lua5.1 docker.io openssl
BENCH_PACKAGES := wrk curl redis-server
COVER_PACKAGES := llvm-22 redis-server postgresql prometheus

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

.PHONY: run
run: ## Run the data plane on embedded defaults (127.0.0.1:8080; ./data holds the SQLite file) with mailpit to send mail to (web page on 127.0.0.1:8025)
	scripts/run.sh

.PHONY: backup
backup: ## Back up the local data plane's store (./data, or DATABASE_URL) into ./data/backups, keeping the 24 newest
	cargo run --quiet -p dataplane -- backup

.PHONY: monitoring-up
monitoring-up: ## Run a real Prometheus scraping the data plane (127.0.0.1:8080, started if absent) with the operator's alert rules, and Perses showing the SecureVault dashboard (http://127.0.0.1:3000; built once by tests/setup/perses.sh); alerts at http://127.0.0.1:9090/alerts
	scripts/monitoring-up.sh

.PHONY: test
test: test-deps ## Run every test (fmt, clippy, unit tests, integration tests against real PostgreSQL, Redis and a Kubernetes control plane)
	@# The release tools (crane, cosign, cargo-cyclonedx: about 10 CPU-minutes
	@# on a cold machine, nothing on a warm one) build behind everything
	@# else from the start, at the lowest priority, in what CPU the builds and
	@# the tests leave idle. The one test that needs them
	@# (operator/tests/publish.rs) runs late and calls the same scripts, whose
	@# lock makes it wait for a build still running; a failed build fails
	@# that test with the build's error.
	mkdir -p "$(CACHE_DIR)"
	(for tool in crane cosign cargo-cyclonedx; do SECUREVAULT_CACHE="$(CACHE_DIR)" nice -n 19 tests/setup/$$tool.sh; done) \
	  >"$(CACHE_DIR)/release-tools.log" 2>&1 </dev/null &
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo build --workspace --locked --bins
	cargo test --workspace --locked --no-run
	@# The Go tools and the cluster, then the tests in lanes; the lane that
	@# needs no cluster starts first (tests/run-tests.sh says how).
	SECUREVAULT_CACHE="$(CACHE_DIR)" SECUREVAULT_KUBECONFIG="$(KUBECONFIG_PATH)" tests/run-tests.sh

.PHONY: test-all
test-all: ## The monthly run: every test (make test, which runs the end-to-end tests too), then make security, then make benchmark
	$(MAKE) test
	$(MAKE) security
	$(MAKE) benchmark

# The tests that install SecureVault as users do, on the real control plane
# with a real node (NODE=real: as root): GitOps through a real Argo CD, the
# Helm chart (and its upgrade from the previous version), kustomize, the
# images, publishing them signed to a registry and installing the chart from
# there, and the operator and data plane as real containers on the real node.
E2E_TESTS := --test gitops --test chart --test chart_upgrade --test kustomize --test image --test publish --test real_node

.PHONY: test-e2e
test-e2e: test-deps ## Run the full-cluster subset on a real node (as root): a real Argo CD syncing SecureVaults from git, helm install, kubectl apply -k, the production images as real containers behind a Service, a real Prometheus Operator's configuration scraping them (make test runs these too)
	cargo build --workspace --locked --bins
	SECUREVAULT_CACHE="$(CACHE_DIR)" tests/setup/argocd.sh >/dev/null
	SECUREVAULT_CACHE="$(CACHE_DIR)" tests/cluster/cluster.sh build
	SECUREVAULT_CACHE="$(CACHE_DIR)" tests/setup/prometheus-operator.sh operator >/dev/null
	SECUREVAULT_CACHE="$(CACHE_DIR)" tests/setup/prometheus-operator.sh prometheus >/dev/null
	SECUREVAULT_CACHE="$(CACHE_DIR)" tests/setup/crane.sh >/dev/null
	SECUREVAULT_CACHE="$(CACHE_DIR)" tests/setup/cosign.sh >/dev/null
	SECUREVAULT_CACHE="$(CACHE_DIR)" tests/setup/cargo-cyclonedx.sh >/dev/null
	SECUREVAULT_CACHE="$(CACHE_DIR)" NODE=real tests/cluster/cluster.sh up
	status=0; SECUREVAULT_KUBECONFIG="$(KUBECONFIG_PATH)" cargo test --workspace --locked --no-fail-fast $(E2E_TESTS) || status=$$?; \
	  SECUREVAULT_CACHE="$(CACHE_DIR)" tests/cluster/cluster.sh down; exit $$status

.PHONY: k8s-deploy
k8s-deploy: ## Install the operator's Helm chart into KUBECONFIG's cluster (default: the local one of make cluster-up) and apply the minimal SecureVault; on kwok-only nodes the operator runs on this host as the chart's ServiceAccount
	SECUREVAULT_CACHE="$(CACHE_DIR)" scripts/k8s-deploy.sh

.PHONY: k8s-undeploy
k8s-undeploy: ## Stop the operator make k8s-deploy runs on this host (the chart stays; helm uninstall removes it)
	SECUREVAULT_CACHE="$(CACHE_DIR)" scripts/k8s-deploy.sh undeploy

.PHONY: console-screenshots
console-screenshots: test-deps ## Run the web console's browser test (Chromium, mailpit, llama.cpp) and keep its screenshots of every page, desktop and phone, in docs/screenshots
	SCREENSHOT_DIR="$(CURDIR)/docs/screenshots" cargo test -p dataplane --locked --test console_browser -- --nocapture

.PHONY: dashboard-screenshot
dashboard-screenshot: test-deps ## Run the dashboard's browser test (Perses over Prometheus over a data plane, in Chromium) and keep its screenshot in docs/screenshots/dashboard-perses.png
	SCREENSHOT_DIR="$(CURDIR)/docs/screenshots" cargo test --workspace --locked --test dashboard_browser -- --nocapture

.PHONY: test-deps
test-deps:
	@tests/setup/debian-packages.sh $(TEST_PACKAGES)
	@SECUREVAULT_CACHE="$(CACHE_DIR)" tests/setup/browser.sh >/dev/null

.PHONY: health
health: ## Query the detailed health of a running data plane (URL=…), signed in as admin (ADMIN_PASSWORD, or ./data/admin-password that make run writes)
	@URL="$(URL)" scripts/health.sh

.PHONY: metrics
metrics: ## Print the Prometheus metrics of a running data plane, from its metrics listener (METRICS_URL=…)
	@curl -sS --fail-with-body "$(METRICS_URL)/metrics"

.PHONY: coverage
coverage: ## Line coverage of the whole workspace's tests; updates the figure in docs/testing.md
	@tests/setup/debian-packages.sh $(COVER_PACKAGES)
	tests/coverage/coverage.sh

.PHONY: security
security: ## cargo-deny (licences, bans, sources; advisories with a local RustSec database), clippy -D warnings, kube-score over the chart and the operator's objects for the complete sample (exceptions in .kube-score.conf)
	SECUREVAULT_CACHE="$(CACHE_DIR)" tests/setup/security.sh

.PHONY: benchmark
benchmark: ## Load-test the data plane with wrk, email into mailpit end to end, AI beside LiteLLM, the AI gateway at 1,000 and 2,000 requests/s against an instant upstream beside LiteLLM (vegeta), an authenticated route with Redis and without, logins under 32 clients, HTTPS against HTTP, backup to and restore from a SeaweedFS bucket with 100,000 emails, the web console with 100,000 emails, then the operator with 500 and with 2,000 SecureVaults (beside the control plane's floor) and managed upgrades on the kwok cluster, then real pods on the real node (as root); each adds a dated row to docs/benchmarks.md
	@tests/setup/debian-packages.sh $(BENCH_PACKAGES)
	tests/bench/benchmark.sh
	tests/bench/email-benchmark.sh
	tests/bench/ai-benchmark.sh
	tests/bench/gateway-benchmark.sh
	tests/bench/auth-benchmark.sh
	tests/bench/login-benchmark.sh
	tests/bench/tls-benchmark.sh
	tests/bench/backup-benchmark.sh
	tests/bench/console-benchmark.sh
	SECUREVAULT_CACHE="$(CACHE_DIR)" tests/bench/operator-benchmark.sh
	SECUREVAULT_CACHE="$(CACHE_DIR)" BENCH_OBJECTS=2000 tests/bench/operator-benchmark.sh
	SECUREVAULT_CACHE="$(CACHE_DIR)" tests/bench/upgrade-benchmark.sh
	SECUREVAULT_CACHE="$(CACHE_DIR)" tests/bench/real-node-benchmark.sh

.PHONY: clean
clean: ## Remove the build cache
	rm -rf "$(CARGO_TARGET_DIR)"

# A real Kubernetes control plane (kube-apiserver, etcd, controller-manager,
# scheduler; kwok's fake nodes) on 127.0.0.1, built from Go modules and cached
# under $(CACHE_DIR)/bin by tests/cluster/cluster.sh.
KUBECONFIG_PATH := $(CACHE_DIR)/cluster/kubeconfig

.PHONY: cluster-up
cluster-up: ## Start a real Kubernetes control plane (kwok nodes; NODE=real adds a real node, as root); kubeconfig at ~/.cache/securevault/cluster/kubeconfig
	SECUREVAULT_CACHE="$(CACHE_DIR)" NODE="$(NODE)" tests/cluster/cluster.sh up

.PHONY: cluster-down
cluster-down: ## Stop it
	SECUREVAULT_CACHE="$(CACHE_DIR)" tests/cluster/cluster.sh down

.PHONY: cluster-build
cluster-build: ## Build and cache the control-plane binaries
	SECUREVAULT_CACHE="$(CACHE_DIR)" tests/cluster/cluster.sh build

.PHONY: docker-prod
docker-prod: ## Build the production images securevault/dataplane:VERSION and securevault/operator:VERSION (FROM scratch; starts a private dockerd if none answers), then run the data plane's as the container securevault-dataplane (read-only, user 65534, data on the volume securevault-data, http://127.0.0.1:8080; secrets in ./data) until healthy; then make health
	SECUREVAULT_CACHE="$(CACHE_DIR)" docker/build.sh
	SECUREVAULT_CACHE="$(CACHE_DIR)" docker/run.sh

.PHONY: docker-down
docker-down: ## Stop and remove the container of make docker-prod (the volume securevault-data keeps the data), and the private dockerd if nothing else runs on it
	SECUREVAULT_CACHE="$(CACHE_DIR)" docker/run.sh down

.PHONY: publish
publish: ## Push both images and the Helm chart to an OCI registry, each image signed by digest with cosign and its SBOM (CycloneDX, cargo-cyclonedx) attached as a signed attestation: make publish REGISTRY=host:port COSIGN_KEY=cosign.key (COSIGN_PASSWORD from the environment; PROFILE as docker-prod; PLAIN_HTTP=1 for an HTTP registry, the default on 127.0.0.1/localhost); see docs/install.md
	SECUREVAULT_CACHE="$(CACHE_DIR)" scripts/publish.sh

.PHONY: registry
registry: ## Start a local OCI registry for make publish in the background (crane, plain HTTP, on 127.0.0.1:5001; REGISTRY_PORT=… moves it; scripts/registry.sh stop stops it)
	SECUREVAULT_CACHE="$(CACHE_DIR)" scripts/registry.sh

.PHONY: manifests
manifests: ## Render the Helm chart into config/rbac, config/manager and config/monitoring (kustomize bases)
	tests/setup/render-manifests.sh

.PHONY: alertmanager-config
alertmanager-config: ## Regenerate config/alertmanager/alertmanager.yml (the complete sample's alert routing for a plain Alertmanager) with the operator's builder
	mkdir -p config/alertmanager
	{ echo '# Generated by `make alertmanager-config` from config/samples/complete.yaml: critical'; \
	  echo '# alerts to PagerDuty, warnings to Slack. The secrets are files in /etc/alertmanager/secrets:'; \
	  echo '# pagerduty-routing-key and slack-api-url. Merge the route and receivers into your own.'; \
	  cargo run --quiet -p operator -- alertmanager config/samples/complete.yaml; } > config/alertmanager/alertmanager.yml.new
	mv config/alertmanager/alertmanager.yml.new config/alertmanager/alertmanager.yml

.PHONY: crds
crds: ## Regenerate crds/securevault.yaml (and the Helm chart's CRD template), the chart's Grafana dashboard and docs/operator.md's CRD reference from the operator's Rust types
	cargo run --quiet -p operator -- crd > crds/securevault.yaml
	tests/setup/chart-crd.sh
	cargo run --quiet -p operator -- dashboard > charts/securevault-operator/dashboards/securevault.json
	cargo run --quiet -p operator -- crd --reference | tests/setup/crd-reference.sh docs/operator.md
