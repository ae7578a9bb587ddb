#!/usr/bin/env bash
# Prepares the real-browser test of the web console
# (dataplane/tests/console_browser.rs): Debian's Chromium, plus the npm
# packages that drive it (playwright-core) and judge the pages' accessibility
# (axe-core). Prints the node_modules directory as the last line of stdout;
# the test hands it to node as NODE_PATH.
#
# Debian's browser, not Playwright's: `playwright install` downloads a browser
# build of its own, and this machine reaches package registries only.
# playwright-core has no install script and downloads nothing.
#
# Idempotent: the packages are installed with `npm install --prefix` into
# $SECUREVAULT_CACHE (default ~/.cache/securevault)/node, outside the
# repository, and only when the pinned version is not already there, so a
# second run asks no registry. Concurrent first runs are serialised with a
# lock beside that directory.
#
# Everything but the final path goes to stderr, so callers can take the last
# stdout line without filtering install noise.
set -euo pipefail

# Exact versions: a new playwright-core may change what it asks of the
# browser, a new axe-core what it calls a violation; a bump is a decision.
PACKAGES=(playwright-core@1.65.1 axe-core@4.14.1)

CACHE=${SECUREVAULT_CACHE:-$HOME/.cache/securevault}
PREFIX=$CACHE/node
MODULES=$PREFIX/node_modules

die() {
  echo "browser.sh: $*" >&2
  exit 1
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$here/debian-packages.sh" chromium >&2
[ -x /usr/bin/chromium ] || die "/usr/bin/chromium is missing after installing Debian's chromium"
command -v node >/dev/null || die "node is not installed (the machine's Node.js runs the browser test)"
command -v npm >/dev/null || die "npm is not installed"

# Whether NAME@VERSION is the version installed under $MODULES.
installed() { # NAME@VERSION
  local name=${1%@*} version=${1##*@} manifest
  manifest=$MODULES/$name/package.json
  [ -f "$manifest" ] || return 1
  [ "$(node -p 'require(process.argv[1]).version' "$manifest" 2>/dev/null)" = "$version" ]
}

missing() {
  local pkg out=()
  for pkg in "${PACKAGES[@]}"; do
    installed "$pkg" || out+=("$pkg")
  done
  echo "${out[@]}"
}

if [ -z "$(missing)" ]; then
  echo "$MODULES"
  exit 0
fi

mkdir -p "$PREFIX"
exec 9>"$PREFIX.lock"
flock 9
todo=$(missing)
if [ -n "$todo" ]; then
  echo "installing npm packages into $PREFIX: $todo" >&2
  # --prefix keeps a package.json and lock file in $PREFIX, so a later bump
  # replaces the old version there. --ignore-scripts: neither package needs
  # one, and no install script may fetch a browser behind our back.
  # shellcheck disable=SC2086 # $todo is a list of words
  npm install --prefix "$PREFIX" --save-exact --ignore-scripts --no-audit --no-fund \
    --loglevel=error $todo >&2
  [ -z "$(missing)" ] || die "npm did not install $(missing) into $PREFIX"
fi
[ -f "$MODULES/axe-core/axe.min.js" ] || die "$MODULES/axe-core/axe.min.js is missing"

echo "$MODULES"
