#!/usr/bin/env bash
# Builds the production images (`make docker-prod`):
#
#   securevault/dataplane:VERSION   the data plane (`serve` by default)
#   securevault/operator:VERSION    the operator (run it with the argument `run`)
#
# from release binaries built here, with docker/Dockerfile: `FROM scratch`
# plus each binary, the shared libraries ldd lists for it, the CA
# certificates and a passwd entry for nobody (65534). Nothing is pulled.
#
# The engine (docker/engine.sh): $DOCKER_HOST if it answers; otherwise a
# private dockerd from Debian's docker.io package (installed if missing) with
# its state under $SECUREVAULT_CACHE/docker (default ~/.cache/securevault/docker),
# started and left running so the images stay usable:
#
#   export DOCKER_HOST=unix://$HOME/.cache/securevault/docker/docker.sock
#
# `make docker-prod` then runs the data plane's image with docker/run.sh.
#
# Prints each image's name and size.
#
# PROFILE=debug packs the workspace's debug binaries instead (what the image
# test does, so that `make test` needs no release build); production images
# are release builds, the default.
set -euo pipefail
cd "$(dirname "$0")/.."
LOG_NAME=docker-prod
# shellcheck source=docker/engine.sh
. docker/engine.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}

REVISION=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git status --porcelain 2>/dev/null)" ] || REVISION="$REVISION-dirty"
CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)

PROFILE=${PROFILE:-release}
case "$PROFILE" in
release) cargo_profile=(--release) ;;
debug) cargo_profile=() ;;
*) die "PROFILE must be release or debug, not '$PROFILE'" ;;
esac
log "building the $PROFILE binaries"
# The whole workspace, as `make test` builds it: `-p` would unify features
# differently and rebuild every dependency in the shared target directory.
cargo build "${cargo_profile[@]}" --locked --workspace --bins >&2

# ------------------------------------------------------------- engine --
ensure_engine

# ------------------------------------------------------------- images --
build() { # BINARY
  local bin=$1 ctx lib
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' RETURN
  # /var/lib is root's (in rootfs/); the state directory, which the
  # Dockerfile gives to 65534, is private: Docker copies its owner and mode
  # into a new named volume mounted there.
  mkdir -p "$ctx/rootfs/etc/ssl/certs" "$ctx/rootfs/tmp" "$ctx/rootfs/var/lib" \
    "$ctx/data/securevault"
  chmod 700 "$ctx/data/securevault"
  # Debug information is for the build machine, not the image (a debug
  # build's is most of its 300 MB; a release build keeps only symbols).
  strip --strip-debug -o "$ctx/$bin" "$CARGO_TARGET_DIR/$PROFILE/$bin"
  # The dynamic loader and every library it would load, at the same paths.
  for lib in $(ldd "$ctx/$bin" | grep -o '/[^ ]*'); do
    mkdir -p "$ctx/rootfs$(dirname "$lib")"
    cp -L "$lib" "$ctx/rootfs$lib"
  done
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/rootfs/etc/ssl/certs/"
  printf 'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$ctx/rootfs/etc/passwd"
  printf 'nogroup:x:65534:\n' >"$ctx/rootfs/etc/group"
  chmod 1777 "$ctx/rootfs/tmp"
  # The image's history records no build machine path: the context is
  # all it sees. The target is the binary's stage (the data plane's adds
  # its HEALTHCHECK).
  DOCKER_BUILDKIT=0 docker build --quiet -f docker/Dockerfile --target "$bin" \
    --build-arg BINARY="$bin" --build-arg VERSION="$VERSION" \
    --build-arg REVISION="$REVISION" --build-arg CREATED="$CREATED" \
    -t "securevault/$bin:$VERSION" "$ctx" >/dev/null
  printf 'securevault/%s:%s %s\n' "$bin" "$VERSION" \
    "$(docker image inspect -f '{{.Size}}' "securevault/$bin:$VERSION")"
}
build dataplane
build operator
