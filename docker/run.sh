#!/usr/bin/env bash
# Runs the data plane's production image, which docker/build.sh built, as a
# container on this machine (`make docker-prod`, after the build), and waits
# until it is healthy; `docker/run.sh down` (`make docker-down`) stops it.
#
#   securevault-dataplane   the container: securevault/dataplane:VERSION in
#                           production mode (the image's default), read-only
#                           root filesystem, /tmp a tmpfs, every capability
#                           dropped, no-new-privileges, user 65534,
#                           restarted unless stopped
#   securevault-data        a named volume at /var/lib/securevault, the
#                           SQLite store: it outlives the container
#
# Network: the host's. The private dockerd runs with --bridge=none
# --iptables=false (it never touches the host's network), so a published
# port would lead nowhere; on the host's network the data plane listens where
# LISTEN_ADDR says, default 127.0.0.1:8080, and its metrics on METRICS_ADDR,
# default 127.0.0.1:9464: loopback only, as `make run`. Set them to
# 0.0.0.0:PORT to serve other machines.
#
# Secrets: production mode refuses to start without SECRET_KEY, and without
# ADMIN_PASSWORD while no administrator exists. Set in the environment, they
# win and are written nowhere. Otherwise each comes from a file in DATA_DIR
# (default ./data, as `make run`), created with a random value (mode 0600)
# when absent:
#
#   admin-password   the administrator's password, the very file `make run`
#                    writes, so `make health` signs in with no argument (the
#                    data plane sets it again on every start: editing the
#                    file and re-running rotates it)
#   secret-key       SECRET_KEY, which signs sessions and API keys: kept, so
#                    they stay valid across restarts
#
# They reach the container as environment variables, which `docker inspect`
# shows to whoever may use this engine (root, here).
#
# Other settings (`dataplane --help`: SMTP_*, OPENAI_*, REDIS_URL, ...) are
# passed to the container when set here, but for the host paths DATA_DIR,
# BACKUP_DIR, TLS_CERT_FILE and TLS_KEY_FILE, which the container cannot see.
# Without SMTP_HOST the data plane starts with email sending disabled (POST
# /api/email answers 503 and says what to set), as production mode allows:
# set SMTP_HOST and SMTP_FROM (SMTP_PORT, SMTP_USERNAME, SMTP_PASSWORD,
# SMTP_TLS) and run `make docker-prod` again to send.
#
# A container of that name is replaced (stopped, so requests in flight
# finish); the volume is kept. The wait lasts HEALTH_TIMEOUT seconds (default
# 120) for Docker's health check (the image's HEALTHCHECK) to say healthy;
# a container that exits or is unhealthy is stopped, and its last log lines
# printed.
#
# `down` stops and removes the container and keeps the volume, its data and
# the images. It then stops the private dockerd that docker/build.sh starts,
# if that is the engine and no other container runs on it, so that nothing of
# SecureVault's keeps running; `make docker-prod` starts it again, with the
# images and the volume still under $SECUREVAULT_CACHE/docker. Any other
# engine, one DOCKER_HOST names, is never stopped.
#
# The engine: as docker/build.sh's (docker/engine.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-up}" in
up) LOG_NAME=docker-prod ;;
down) LOG_NAME=docker-down ;;
*)
  echo "usage: docker/run.sh [up|down]" >&2
  exit 2
  ;;
esac
# shellcheck source=docker/engine.sh
. docker/engine.sh

NAME=securevault-dataplane
VOLUME=securevault-data
IMAGE=securevault/dataplane:$VERSION

# ---------------------------------------------------------------- down --
if [ "${1:-up}" = down ]; then
  if ! docker info >/dev/null 2>&1; then
    [ "$DOCKER_HOST" = "$PRIVATE_HOST" ] || die "DOCKER_HOST=$DOCKER_HOST does not answer"
    log "the private dockerd is not running: nothing to stop"
    exit 0
  fi
  if docker container inspect "$NAME" >/dev/null 2>&1; then
    # stop, not rm -f: SIGTERM, so requests in flight finish.
    docker stop "$NAME" >/dev/null
    docker rm "$NAME" >/dev/null
    log "removed the container $NAME; the volume $VOLUME keeps the data"
  else
    log "no container $NAME"
  fi
  pid=$(private_engine_pid)
  if [ -n "$pid" ]; then
    others=$(docker ps -q | wc -l)
    if [ "$others" -gt 0 ]; then
      log "the private dockerd keeps running: $others other container(s) run on it"
    else
      kill "$pid"
      for _ in $(seq 150); do
        [ -d "/proc/$pid" ] || break
        sleep 0.2
      done
      [ ! -d "/proc/$pid" ] || die "the private dockerd ($pid) did not stop within 30 s"
      # dockerd leaves the network namespace it bind-mounted there mounted.
      umount "$DOCKER_DIR/exec/netns/default" 2>/dev/null || true
      log "stopped the private dockerd; images and volume stay in $DOCKER_DIR"
    fi
  fi
  exit 0
fi

# ------------------------------------------------------------------ up --
ensure_engine
docker image inspect "$IMAGE" >/dev/null 2>&1 ||
  die "no image $IMAGE on $DOCKER_HOST: build it with docker/build.sh (make docker-prod does both)"

export LISTEN_ADDR=${LISTEN_ADDR:-127.0.0.1:8080}
export METRICS_ADDR=${METRICS_ADDR:-127.0.0.1:9464}
DATA_DIR=${DATA_DIR:-./data}
HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-120}

# The file's value, made of BYTES random bytes in hex first if it is absent.
secret_file() { # NAME BYTES
  local file=$DATA_DIR/$1
  if [ ! -s "$file" ]; then
    (
      umask 077
      od -An -tx1 -N"$2" /dev/urandom | tr -d ' \n' >"$file.new"
      echo >>"$file.new"
    )
    mv "$file.new" "$file"
    log "generated $file (mode 0600)"
  fi
  cat "$file"
}
(umask 077 && mkdir -p "$DATA_DIR")
admin_hint="with the password in $DATA_DIR/admin-password"
if [ -n "${ADMIN_PASSWORD:-}" ]; then
  admin_hint="with ADMIN_PASSWORD set as now"
else
  # 16 bytes: 32 hex digits, above the 12 characters a password needs.
  ADMIN_PASSWORD=$(secret_file admin-password 16)
fi
[ -n "${SECRET_KEY:-}" ] || SECRET_KEY=$(secret_file secret-key 32)
export ADMIN_PASSWORD SECRET_KEY

# Every setting the data plane reads (its `env = "…"` in the command line's
# source, so none is forgotten) that is set here; `-e NAME` takes the value
# from this environment, so no secret shows on a command line.
settings=()
while read -r var; do
  case $var in
  DATA_DIR | BACKUP_DIR | TLS_CERT_FILE | TLS_KEY_FILE) continue ;; # host paths
  esac
  if [ -n "${!var+set}" ]; then settings+=(-e "$var"); fi
done < <(sed -n 's/.*env = "\([A-Z0-9_]*\)".*/\1/p' dataplane/src/cli.rs)
if [ -z "${SMTP_HOST:-}" ]; then
  log "SMTP_HOST is not set: email sending is disabled (set SMTP_HOST and SMTP_FROM, then make docker-prod, to send)"
fi

if docker container inspect "$NAME" >/dev/null 2>&1; then
  log "replacing the container $NAME (the volume $VOLUME stays)"
  docker stop "$NAME" >/dev/null
  docker rm "$NAME" >/dev/null
fi

# The address a client on this machine reaches a listener on.
local_addr() { # IP:PORT
  local host=${1%:*}
  case $host in
  0.0.0.0) host=127.0.0.1 ;;
  "[::]") host="[::1]" ;;
  esac
  echo "$host:${1##*:}"
}
for addr in "$LISTEN_ADDR" "$METRICS_ADDR"; do
  reach=$(local_addr "$addr")
  host=${reach%:*}
  host=${host#[}
  if (exec 3<>"/dev/tcp/${host%]}/${reach##*:}") 2>/dev/null; then
    die "$addr is in use (by make run?): stop what listens there, or set LISTEN_ADDR and METRICS_ADDR"
  fi
done

# Probed every second until healthy rather than every 10 s (the image's
# interval), so the wait below ends as soon as it can; engines older than
# API 1.44 (Docker 25) do not know the option.
health=()
api=$(docker version -f '{{.Server.APIVersion}}')
if [ "$(printf '%s\n' 1.44 "$api" | sort -V | head -n 1)" = 1.44 ]; then
  health=(--health-start-interval 1s)
fi

log "starting $NAME on $LISTEN_ADDR (metrics $METRICS_ADDR; data on the volume $VOLUME)"
# --stop-timeout: beyond the 25 s that requests in flight get after SIGTERM
# (SHUTDOWN_TIMEOUT_SECS). The logs are rotated, not left to fill the disk.
docker run --detach --name "$NAME" "${health[@]}" \
  --read-only --tmpfs /tmp:rw,noexec,nosuid,nodev \
  --cap-drop ALL --security-opt no-new-privileges --user 65534:65534 \
  --mount "type=volume,source=$VOLUME,target=/var/lib/securevault" \
  --network host --restart unless-stopped --stop-timeout 30 \
  --log-opt max-size=10m --log-opt max-file=3 \
  "${settings[@]}" "$IMAGE" >/dev/null

deadline=$((SECONDS + HEALTH_TIMEOUT))
while :; do
  read -r status health restarts < <(docker container inspect -f \
    '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.RestartCount}}' "$NAME")
  [ "$health" != healthy ] || break
  failure=
  if [ "$status" != running ] || [ "$restarts" -gt 0 ]; then
    failure="it stopped (it is $status, restarted $restarts times)"
  elif [ "$health" = unhealthy ]; then
    failure="Docker's health check says unhealthy: $(docker container inspect -f \
      '{{range .State.Health.Log}}{{.Output}}{{end}}' "$NAME" | grep . | tail -n 1)"
  elif [ "$health" = none ]; then
    failure="its image has no health check: rebuild it with docker/build.sh"
  elif [ "$SECONDS" -ge "$deadline" ]; then
    failure="not healthy after ${HEALTH_TIMEOUT} s"
  fi
  if [ -n "$failure" ]; then
    log "$NAME: $failure; its last log lines:"
    docker logs --tail 20 "$NAME" >&2 2>&1 || true
    docker stop "$NAME" >/dev/null 2>&1 || true
    die "$NAME is stopped (docker logs $NAME shows more; make docker-down removes it)"
  fi
  sleep 0.5
done

url=http://$(local_addr "$LISTEN_ADDR")
health_args=
[ "$DATA_DIR" = ./data ] || health_args+=" DATA_DIR=$DATA_DIR"
[ "$url" = http://127.0.0.1:8080 ] || health_args+=" URL=$url"
cat <<EOF
$NAME is healthy at $url (web console $url/console; metrics http://$(local_addr "$METRICS_ADDR")/metrics)
Its detailed health, signed in as admin $admin_hint:
  make health$health_args
Stop it (the volume $VOLUME keeps the data):
  make docker-down
EOF
