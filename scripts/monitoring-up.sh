#!/usr/bin/env bash
# `make monitoring-up`: a real Prometheus (Debian's package) on this machine,
# scraping a running data plane with the alert rules the operator generates
# loaded, as a Prometheus Operator would set it up in a cluster, and a real
# Perses showing the SecureVault dashboard over it.
#
# - The data plane at DATAPLANE_ADDR (default 127.0.0.1:8080, where `make run`
#   listens) is scraped every 5 s on its metrics listener, METRICS_ADDR
#   (default 127.0.0.1:9464); when nothing answers there, one is started on
#   embedded defaults (DATA_DIR) and stopped with Prometheus.
# - The rules are `operator rules` of SECUREVAULT_MANIFEST (default
#   config/samples/minimal.yaml: SecureVault default/mail). The scrape gives
#   the target the labels a ServiceMonitor would (namespace, service, pod),
#   so the rules select it.
# - Prometheus listens on PROMETHEUS_ADDR (default 127.0.0.1:9090) and keeps
#   its data in DATA_DIR/prometheus.
# - Perses (tests/setup/perses.sh builds it once) listens on PERSES_ADDR
#   (default 127.0.0.1:3000) and keeps its data in DATA_DIR/perses. Its file
#   provisioning creates the project `securevault`, a Prometheus datasource
#   pointing at the Prometheus above, and the dashboard `percli migrate`
#   makes of the Grafana dashboard the chart ships
#   (charts/securevault-operator/dashboards/securevault.json). The
#   dashboard's URL, with its variables set to the scraped instance, is the
#   one line this script prints on stdout.
# - DATA_DIR defaults to ./data. OPERATOR_BIN and DATAPLANE_BIN, when both
#   are set, are used instead of `cargo build` (a test runs this script
#   while its own cargo holds the build lock).
#
# Everything runs until Ctrl-C (or SIGTERM); everything started here is
# stopped then, and when Prometheus or Perses exits.
set -euo pipefail
cd "$(dirname "$0")/.."

DATAPLANE_ADDR=${DATAPLANE_ADDR:-127.0.0.1:8080}
METRICS_ADDR=${METRICS_ADDR:-127.0.0.1:9464}
PROMETHEUS_ADDR=${PROMETHEUS_ADDR:-127.0.0.1:9090}
PERSES_ADDR=${PERSES_ADDR:-127.0.0.1:3000}
SECUREVAULT_MANIFEST=${SECUREVAULT_MANIFEST:-config/samples/minimal.yaml}
DATA_DIR=${DATA_DIR:-./data}
DIR="$DATA_DIR/prometheus"
PERSES_DATA="$DATA_DIR/perses"
GRAFANA_DASHBOARD=charts/securevault-operator/dashboards/securevault.json
# Names of what Perses provisions.
PROJECT=securevault
DATASOURCE=prometheus
target=${CARGO_TARGET_DIR:-target}/debug

die() {
  echo "monitoring-up: $*" >&2
  exit 1
}

tests/setup/debian-packages.sh prometheus curl
if [ -z "${OPERATOR_BIN:-}" ] || [ -z "${DATAPLANE_BIN:-}" ]; then
  cargo build --quiet -p operator -p dataplane
fi
OPERATOR_BIN=${OPERATOR_BIN:-$target/operator}
DATAPLANE_BIN=${DATAPLANE_BIN:-$target/dataplane}
perses_dir=$(tests/setup/perses.sh | tail -n1)
[ -x "$perses_dir/perses" ] || die "tests/setup/perses.sh printed $perses_dir, which holds no perses"
mkdir -p "$DIR"

"$OPERATOR_BIN" rules "$SECUREVAULT_MANIFEST" >"$DIR/rules.json" ||
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
# A signal ends the script through `exit`, so the EXIT trap stops the
# children. (Children started with `&` ignore SIGINT, so Ctrl-C reaches them
# only through this.)
trap 'exit 130' INT
trap 'exit 143' TERM

if ! curl -sf -o /dev/null "http://$DATAPLANE_ADDR/api/health"; then
  echo "monitoring-up: no data plane at $DATAPLANE_ADDR: starting one (log in $DATA_DIR/monitoring-dataplane.log)" >&2
  LISTEN_ADDR=$DATAPLANE_ADDR METRICS_ADDR=$METRICS_ADDR DATA_DIR=$DATA_DIR SESSION_COOKIE_SECURE=false \
    "$DATAPLANE_BIN" serve >"$DATA_DIR/monitoring-dataplane.log" 2>&1 &
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
prometheus --config.file="$DIR/prometheus.yml" --storage.tsdb.path="$DIR/data" \
  --web.listen-address="$PROMETHEUS_ADDR" --log.level=warn &
prometheus_pid=$!
children+=("$prometheus_pid")

# Perses: a fresh database and provisioning folder on each start, so what it
# shows is what the chart ships today.
rm -rf "$PERSES_DATA"
# Without an archive folder, the server loads no plugin at all.
mkdir -p "$PERSES_DATA/provisioning" "$PERSES_DATA/db" "$PERSES_DATA/plugins-archive"
# Absolute: the config names these folders, and Perses runs in its own.
PERSES_DATA=$(cd "$PERSES_DATA" && pwd)
# The server writes into its plugin folder, so it gets a copy of its own.
cp -r "$perses_dir/plugins" "$PERSES_DATA/plugins"
cat >"$PERSES_DATA/config.yaml" <<YAML
# Written by scripts/monitoring-up.sh.
database:
  file:
    folder: $PERSES_DATA/db
    extension: json
plugin:
  path: $PERSES_DATA/plugins
  archive_path: $PERSES_DATA/plugins-archive
provisioning:
  folders:
    - $PERSES_DATA/provisioning
YAML
cat >"$PERSES_DATA/provisioning/project.json" <<JSON
{"kind": "Project", "metadata": {"name": "$PROJECT"}, "spec": {"display": {"name": "SecureVault"}}}
JSON
# scrapeInterval: the shortest step Perses asks for, as scraped above.
cat >"$PERSES_DATA/provisioning/datasource.json" <<JSON
{"kind": "Datasource", "metadata": {"name": "$DATASOURCE", "project": "$PROJECT"},
 "spec": {"default": true, "display": {"name": "Prometheus"},
          "plugin": {"kind": "PrometheusDatasource",
                     "spec": {"scrapeInterval": "5s",
                              "proxy": {"kind": "HTTPProxy", "spec": {"url": "http://$PROMETHEUS_ADDR"}}}}}}
JSON
# The Grafana dashboard, migrated offline with the plugins' migration
# schemas. Perses has no variable of datasources: the migration turns
# Grafana's `datasource` variable into a placeholder list ("grafana
# migration not supported"), so it is dropped and the queries name the
# project's one datasource instead.
"$perses_dir/percli" migrate -f "$GRAFANA_DASHBOARD" --plugin.path "$PERSES_DATA/plugins" \
  --project "$PROJECT" -o json >"$PERSES_DATA/migrated.json" ||
  die "percli migrate failed on $GRAFANA_DASHBOARD"
python3 - "$PERSES_DATA/migrated.json" "$DATASOURCE" >"$PERSES_DATA/provisioning/dashboard.json" <<'PY'
import json, sys

board = json.load(open(sys.argv[1]))
spec = board["spec"]
spec["variables"] = [v for v in spec.get("variables", []) if v["spec"]["name"] != "datasource"]

def walk(node):
    if isinstance(node, dict):
        if node.get("kind") == "PrometheusDatasource" and node.get("name") == "${datasource}":
            node["name"] = sys.argv[2]
        for value in node.values():
            walk(value)
    elif isinstance(node, list):
        for value in node:
            walk(value)

walk(board)
text = json.dumps(board, indent=2)
# What the migration could not translate shows up as these; fail here
# rather than on a dashboard that silently lacks a panel.
for sign in ("${datasource}", "StaticListVariable", "Markdown", "not supported"):
    if sign in text:
        sys.exit(f"the migrated dashboard still has {sign!r}")
print(text)
PY

echo "monitoring-up: Perses on http://$PERSES_ADDR (log in $PERSES_DATA/perses.log)" >&2
(cd "$PERSES_DATA" && exec "$perses_dir/perses" --config config.yaml --web.listen-address "$PERSES_ADDR") \
  >"$PERSES_DATA/perses.log" 2>&1 &
perses_pid=$!
children+=("$perses_pid")
# Provisioning runs at start; the dashboard is there once the API has it.
api=http://$PERSES_ADDR/api/v1/projects/$PROJECT/dashboards/$PROJECT
for _ in $(seq 1 150); do
  curl -sf -o /dev/null "$api" && break
  kill -0 "$perses_pid" 2>/dev/null || break
  sleep 0.2
done
curl -sf -o /dev/null "$api" ||
  die "Perses did not serve the dashboard; its log ends with:
$(tail -n 20 "$PERSES_DATA/perses.log")"

echo "monitoring-up: alerts at http://$PROMETHEUS_ADDR/alerts (targets at http://$PROMETHEUS_ADDR/targets); Ctrl-C stops" >&2
echo "http://$PERSES_ADDR/projects/$PROJECT/dashboards/$PROJECT?var-namespace=$namespace&var-securevault=$name"
# Until Prometheus or Perses exits (or a signal ends the script).
wait -n "$prometheus_pid" "$perses_pid"
