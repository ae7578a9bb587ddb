#!/usr/bin/env bash
# Installs Python packages the tests run for real (e.g. the Standard Webhooks
# reference library that verifies our signatures) into one virtual
# environment outside the repository, and prints its python as the last line
# of stdout.
#
#   tests/setup/python-venv.sh standardwebhooks==1.1.0 …
#
# Idempotent: each requirement is installed once; a stamp per requirement
# records it, so a second run touches nothing. The venv lives under
# $SECUREVAULT_CACHE (default ~/.cache/securevault)/$VENV_NAME (default
# `venv`; tools whose dependencies could clash get a venv of their own);
# concurrent first runs are serialised with a lock.
set -euo pipefail

CACHE=${SECUREVAULT_CACHE:-$HOME/.cache/securevault}
VENV_NAME=${VENV_NAME:-venv}
case "$VENV_NAME" in '' | */* | .*) echo "python-venv.sh: bad VENV_NAME $VENV_NAME" >&2 && exit 1 ;; esac
VENV=$CACHE/$VENV_NAME
PYTHON=$VENV/bin/python

mkdir -p "$CACHE"
exec 9>"$VENV.lock"
flock 9

if [ ! -x "$PYTHON" ]; then
  echo "creating the test virtualenv in $VENV (first run only)" >&2
  python3 -m venv "$VENV" >&2
fi
mkdir -p "$VENV/.installed"
for requirement in "$@"; do
  stamp=$VENV/.installed/$(printf '%s' "$requirement" | tr -c 'A-Za-z0-9._=-' '_')
  [ -e "$stamp" ] && continue
  echo "installing $requirement into $VENV" >&2
  "$PYTHON" -m pip install --quiet --disable-pip-version-check "$requirement" >&2
  touch "$stamp"
done
echo "$PYTHON"
