#!/usr/bin/env bash
# Builds Perses (CNCF dashboards, Apache-2.0) for `make monitoring-up` and
# the dashboard's browser test (operator/tests/dashboard_browser.rs): the
# `perses` server with its web UI embedded, the `percli` CLI that migrates
# the chart's Grafana dashboard, and a `plugins/` folder the server loads.
# Prints the install directory as the last line of stdout; the build's noise
# goes to stderr.
#
# From package registries only, since this machine reaches no GitHub release:
# - the server and CLI: the Go module github.com/perses/perses@VERSION, built
#   with the machine's Go;
# - its web UI: built from the same module's ui/ with npm (no prebuilt UI is
#   published: @perses-dev/app is private). Only the app bundle is built: it
#   compiles the @perses-dev/* libraries from their sources (tsconfig paths),
#   so the libraries' own builds (turbo, tsc) are skipped;
# - the plugins: their JS bundles from npm, their CUE schemas (which the
#   server requires for every datasource, query, variable and panel kind)
#   from the Go modules github.com/perses/plugins/<name>, with the
#   github.com/perses/perses/cue dependency vendored into cue.mod/pkg as
#   `percli plugin build` does, since the CUE registry is out of reach.
#
# v0.52.0 because it is the newest release whose UI builds from npm here:
# later ones pin @perses-dev/* library versions the npm mirror lacks.
#
# Idempotent: the result lives in $SECUREVAULT_CACHE (default
# ~/.cache/securevault)/bin/perses-VERSION, built in a temporary directory
# beside it and moved into place whole, so a half-done build is never taken
# for a finished one. Concurrent first runs are serialised with a lock. The
# machine's npm cache and GOMODCACHE are used as they are.
set -euo pipefail

VERSION=v0.52.0
# name in plugins/ | npm package@version (bundle) | Go module@version (schemas).
# The SecureVault dashboard migrated from Grafana uses only these kinds:
# PrometheusDatasource, PrometheusTimeSeriesQuery,
# PrometheusLabelValuesVariable and TimeSeriesChart.
PLUGINS=(
  "Prometheus|@perses-dev/prometheus-plugin@0.53.4|github.com/perses/plugins/prometheus@v0.53.4"
  "TimeSeriesChart|@perses-dev/timeseries-chart-plugin@0.10.2|github.com/perses/plugins/timeserieschart@v0.10.1"
)

CACHE=${SECUREVAULT_CACHE:-$HOME/.cache/securevault}
DIR=$CACHE/bin/perses-$VERSION

die() {
  echo "perses.sh: $*" >&2
  exit 1
}

ok() {
  [ -x "$DIR/perses" ] && [ -x "$DIR/percli" ] || return 1
  "$DIR/percli" version 2>/dev/null | grep -q "${VERSION#v}" || return 1
  local p
  for p in "${PLUGINS[@]}"; do
    [ -f "$DIR/plugins/${p%%|*}/mf-manifest.json" ] || return 1
  done
}

if ok; then
  echo "$DIR"
  exit 0
fi

mkdir -p "$CACHE/bin"
exec 9>"$DIR.lock"
flock 9
if ok; then
  echo "$DIR"
  exit 0
fi

for tool in go npm node python3 gzip; do
  command -v "$tool" >/dev/null || die "$tool is needed to build Perses $VERSION"
done

# The directory a Go module version is unpacked in (downloading it if needed).
moddir() {
  go mod download -json "$1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])'
}

echo "perses.sh: building Perses $VERSION from the Go proxy and npm (first run only, a few minutes)" >&2
tmp=$(mktemp -d "$CACHE/bin/.perses-$VERSION.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
src=$tmp/src
cp -r "$(moddir "github.com/perses/perses@$VERSION")" "$src"
chmod -R u+w "$src"

# The web UI. --ignore-scripts: the app bundle needs no install script (the
# two that exist, @swc/core's and esbuild's, only check their binaries).
start=$SECONDS
(
  cd "$src/ui"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
) >&2
echo "perses.sh: npm ci took $((SECONDS - start)) s" >&2
start=$SECONDS
(
  cd "$src/ui/app"
  rm -rf dist
  NODE_ENV=production npm run --silent build
) >&2
[ -f "$src/ui/app/dist/index.html" ] || die "the UI build left no ui/app/dist/index.html"
echo "perses.sh: UI build took $((SECONDS - start)) s" >&2

# ui/embed.go embeds the gzipped UI; the module ships only its template.
start=$SECONDS
(
  cd "$src"
  bash scripts/compress_assets.sh
  CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=${VERSION#v}" \
    -o "$tmp/" ./cmd/perses ./cmd/percli
) >&2
echo "perses.sh: go build took $((SECONDS - start)) s" >&2

perses_cue=$(moddir "github.com/perses/perses@$VERSION")/cue
mkdir -p "$tmp/npm"
for p in "${PLUGINS[@]}"; do
  IFS='|' read -r name package module <<<"$p"
  out=$tmp/plugins/$name
  tgz=$(cd "$tmp/npm" && npm pack --silent "$package" | tail -1)
  mkdir -p "$out/cue.mod/pkg/github.com/perses/perses"
  tar xzf "$tmp/npm/$tgz" -C "$out" --strip-components=1
  schemas=$(moddir "$module")
  cp -r "$schemas/schemas" "$out/schemas"
  # module.cue without its `deps` block, which would send the CUE loader to
  # registry.cue.works; the dependency is vendored instead.
  python3 - "$schemas/cue.mod/module.cue" >"$out/cue.mod/module.cue" <<'PY'
import re, sys
print(re.sub(r'\ndeps:\s*\{.*\n\}\s*$', '\n', open(sys.argv[1]).read(), flags=re.S))
PY
  cp -r "$perses_cue" "$out/cue.mod/pkg/github.com/perses/perses/cue"
  rm -rf "$out/cue.mod/pkg/github.com/perses/perses/cue/cue.mod"
  # Without schemasPath the server would read every folder, cue.mod too.
  python3 - "$out/package.json" <<'PY'
import json, sys
path = sys.argv[1]
manifest = json.load(open(path))
manifest["perses"].setdefault("schemasPath", "schemas")
json.dump(manifest, open(path, "w"), indent=2)
PY
  chmod -R u+w "$out"
  echo "perses.sh: plugin $name from $package and $module" >&2
done

rm -rf "$tmp/src" "$tmp/npm"
chmod 755 "$tmp" # mktemp's 700 would hide it from other users
rm -rf "$DIR"
mv "$tmp" "$DIR"
trap - EXIT
ok || die "$DIR is incomplete after the build"
echo "$DIR"
