#!/usr/bin/env bash
# `make monitoring-up`: a real Prometheus (Debian's package) on this machine,
# scraping a running data plane with the alert rules the operator generates
# loaded, as a Prometheus Operator would set it up in a cluster.
#
# - The data plane at DATAPLANE_ADDR (default 127.0.0.1:8080, where `make run`
#   listens) is scraped every 5 s on its metrics listener, METRICS_ADDR
#   (default 127.0.0.1:9464); when nothing answers there, one is started on
#   embedded defaults (./data) and stopped with Prometheus.
# - The rules are `operator rules` of SECUREVAULT_MANIFEST (default
#   config/samples/minimal.yaml: SecureVault default/mail). The scrape gives
#   the target the labels a ServiceMonitor would (namespace, service, pod),
#   so the rules select it.
# - Prometheus listens on PROMETHEUS_ADDR (default 127.0.0.1:9090) and keeps
#   its data in ./data/prometheus; it runs in the foreground until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

DATAPLANE_ADDR=${DATAPLANE_ADDR:-127.0.0.1:8080}
METRICS_ADDR=${METRICS_ADDR:-127.0.0.1:9464}
PROMETHEUS_ADDR=${PROMETHEUS_ADDR:-127.0.0.1:9090}
SECUREVAULT_MANIFEST=${SECUREVAULT_MANIFEST:-config/samples/minimal.yaml}
DATA_DIR=${DATA_DIR:-./data}
DIR="$DATA_DIR/prometheus"
target=${CARGO_TARGET_DIR:-target}/debug

die() {
  echo "monitoring-up: $*" >&2
  exit 1
}

tests/setup/debian-packages.sh prometheus curl
cargo build --quiet -p operator -p dataplane
mkdir -p "$DIR"

"$target/operator" rules "$SECUREVAULT_MANIFEST" >"$DIR/rules.json" ||
  die "could not render the rules of $SECUREVAULT_MANIFEST"
# The instance the rules select, from their own labels.
read -r namespace name < <(python3 -c '
import json, sys
labels = json.load(open(sys.argv[1]))["groups"][0]["rules"][0]["labels"]
print(labels["namespace"], labels["securevault"])' "$DIR/rules.json")

children=()
stop_children() {
  for pid in "${children[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
trap stop_children EXIT

if ! curl -sf -o /dev/null "http://$DATAPLANE_ADDR/api/health"; then
  echo "monitoring-up: no data plane at $DATAPLANE_ADDR: starting one (log in $DATA_DIR/monitoring-dataplane.log)" >&2
  LISTEN_ADDR=$DATAPLANE_ADDR METRICS_ADDR=$METRICS_ADDR DATA_DIR=$DATA_DIR SESSION_COOKIE_SECURE=false \
    "$target/dataplane" serve >"$DATA_DIR/monitoring-dataplane.log" 2>&1 &
  children+=($!)
  for _ in $(seq 1 150); do
    curl -sf -o /dev/null "http://$DATAPLANE_ADDR/api/health" && break
    sleep 0.2
  done
  curl -sf -o /dev/null "http://$DATAPLANE_ADDR/api/health" || die "the data plane did not start"
fi

cat >"$DIR/prometheus.yml" <<YAML
# Written by scripts/monitoring-up.sh.
global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files:
  - rules.json
scrape_configs:
  - job_name: $name
    metrics_path: /metrics
    static_configs:
      - targets: ['$METRICS_ADDR']
        labels: {namespace: $namespace, service: $name, pod: $name-local}
YAML
promtool check config "$DIR/prometheus.yml" >/dev/null || die "promtool rejects $DIR/prometheus.yml"

echo "monitoring-up: Prometheus scraping http://$METRICS_ADDR/metrics as SecureVault $namespace/$name" >&2
echo "monitoring-up: alerts at http://$PROMETHEUS_ADDR/alerts (targets at http://$PROMETHEUS_ADDR/targets); Ctrl-C stops" >&2
prometheus --config.file="$DIR/prometheus.yml" --storage.tsdb.path="$DIR/data" \
  --web.listen-address="$PROMETHEUS_ADDR" --log.level=warn &
children+=($!)
wait "${children[-1]}"
