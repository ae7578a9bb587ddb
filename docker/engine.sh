# shellcheck shell=bash
# Sourced by docker/build.sh and docker/run.sh: the Docker engine they talk
# to, the image version, and how they report.
#
# The engine: $DOCKER_HOST if it answers; otherwise a private dockerd from
# Debian's docker.io package (installed if missing) with its state under
# $SECUREVAULT_CACHE/docker (default ~/.cache/securevault/docker): its
# images, containers and volumes. `ensure_engine` starts it when it is not
# running and leaves it running; `docker/run.sh down` is the only place
# that stops it (see there).
#
# The caller sets LOG_NAME (the prefix of its messages) and has cd'd to the
# repository.

CACHE=${SECUREVAULT_CACHE:-$HOME/.cache/securevault}
DOCKER_DIR=$CACHE/docker
PRIVATE_HOST=unix://$DOCKER_DIR/docker.sock
export PATH="$HOME/.cargo/bin:$PATH"
# shellcheck disable=SC2034 # used by the scripts that source this one
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)

log() { printf '%s: %s\n' "$LOG_NAME" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

if [ -z "${DOCKER_HOST:-}" ]; then
  export DOCKER_HOST=$PRIVATE_HOST
fi

# The private engine's pid when it is the one DOCKER_HOST names and it runs;
# nothing otherwise.
private_engine_pid() {
  local pid
  [ "$DOCKER_HOST" = "$PRIVATE_HOST" ] || return 0
  pid=$(cat "$DOCKER_DIR/dockerd.pid" 2>/dev/null) || return 0
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] && echo "$pid"
  return 0
}

ensure_engine() {
  docker info >/dev/null 2>&1 && return 0
  [ "$DOCKER_HOST" = "$PRIVATE_HOST" ] ||
    die "DOCKER_HOST=$DOCKER_HOST does not answer"
  command -v dockerd >/dev/null || tests/setup/debian-packages.sh docker.io >&2
  [ "$(id -u)" -eq 0 ] || die "starting dockerd needs root; or set DOCKER_HOST to a running engine"
  mkdir -p "$DOCKER_DIR"
  log "starting a private dockerd ($DOCKER_HOST; log $DOCKER_DIR/dockerd.log)"
  # vfs: no overlay filesystem in a sandbox; no bridge or iptables: the
  # engine never touches the host's network (a container that serves uses
  # the host's, see docker/run.sh).
  setsid dockerd --storage-driver=vfs --data-root="$DOCKER_DIR/data" \
    --exec-root="$DOCKER_DIR/exec" --pidfile="$DOCKER_DIR/dockerd.pid" \
    --host="$DOCKER_HOST" --iptables=false --bridge=none \
    >"$DOCKER_DIR/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 100); do
    docker info >/dev/null 2>&1 && break
    sleep 0.2
  done
  docker info >/dev/null 2>&1 || die "dockerd did not start: $(tail -n 5 "$DOCKER_DIR/dockerd.log")"
}
