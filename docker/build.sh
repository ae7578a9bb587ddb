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
# The engine: $DOCKER_HOST if it answers; otherwise a private dockerd from
# Debian's docker.io package (installed if missing) with its state under
# $SECUREVAULT_CACHE/docker (default ~/.cache/securevault/docker), started
# and left running so the images stay usable:
#
#   export DOCKER_HOST=unix://$HOME/.cache/securevault/docker/docker.sock
#
# Prints each image's name and size.
#
# PROFILE=debug packs the workspace's debug binaries instead (what the image
# test does, so that `make test` needs no release build); production images
# are release builds, the default.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${SECUREVAULT_CACHE:-$HOME/.cache/securevault}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
export PATH="$HOME/.cargo/bin:$PATH"
log() { printf 'docker-prod: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
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
DOCKER_DIR=$CACHE/docker
if [ -z "${DOCKER_HOST:-}" ]; then
  export DOCKER_HOST=unix://$DOCKER_DIR/docker.sock
fi
if ! docker info >/dev/null 2>&1; then
  [ "$DOCKER_HOST" = "unix://$DOCKER_DIR/docker.sock" ] ||
    die "DOCKER_HOST=$DOCKER_HOST does not answer"
  command -v dockerd >/dev/null || tests/setup/debian-packages.sh docker.io >&2
  [ "$(id -u)" -eq 0 ] || die "starting dockerd needs root; or set DOCKER_HOST to a running engine"
  mkdir -p "$DOCKER_DIR"
  log "starting a private dockerd ($DOCKER_HOST; log $DOCKER_DIR/dockerd.log)"
  # vfs: no overlay filesystem in a sandbox; no bridge or iptables: the
  # build needs no network.
  setsid dockerd --storage-driver=vfs --data-root="$DOCKER_DIR/data" \
    --exec-root="$DOCKER_DIR/exec" --pidfile="$DOCKER_DIR/dockerd.pid" \
    --host="$DOCKER_HOST" --iptables=false --bridge=none \
    >"$DOCKER_DIR/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 100); do
    docker info >/dev/null 2>&1 && break
    sleep 0.2
  done
  docker info >/dev/null 2>&1 || die "dockerd did not start: $(tail -n 5 "$DOCKER_DIR/dockerd.log")"
fi

# ------------------------------------------------------------- images --
build() { # BINARY
  local bin=$1 ctx lib
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' RETURN
  mkdir -p "$ctx/rootfs/etc/ssl/certs" "$ctx/rootfs/tmp" "$ctx/rootfs/var/lib/securevault"
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
  # all it sees.
  DOCKER_BUILDKIT=0 docker build --quiet -f docker/Dockerfile \
    --build-arg BINARY="$bin" --build-arg VERSION="$VERSION" \
    --build-arg REVISION="$REVISION" --build-arg CREATED="$CREATED" \
    -t "securevault/$bin:$VERSION" "$ctx" >/dev/null
  printf 'securevault/%s:%s %s\n' "$bin" "$VERSION" \
    "$(docker image inspect -f '{{.Size}}' "securevault/$bin:$VERSION")"
}
build dataplane
build operator
