#!/usr/bin/env bash
# `make publish REGISTRY=host:port COSIGN_KEY=cosign.key`: publishes a
# release to an OCI registry, as users install it:
#
#   REGISTRY/securevault/dataplane:VERSION    the images docker/build.sh builds
#   REGISTRY/securevault/operator:VERSION     (PROFILE passes through to it)
#   oci://REGISTRY/charts/securevault-operator:CHART_VERSION   the Helm chart
#
# Each image and the chart are signed by digest with cosign and the key
# COSIGN_KEY (a key file, or a KMS reference such as awskms://…; its
# password in COSIGN_PASSWORD, which may be empty); each image carries its
# binary's CycloneDX SBOM (cargo-cyclonedx, from Cargo.lock) as a signed
# attestation of type cyclonedx. Prints on stdout each pushed reference with its digest, then the
# commands a user runs to verify and install; progress goes to stderr.
#
# Offline by design: a key pair rather than keyless signing, and no Rekor
# transparency log (both are Sigstore services on the Internet), so
# verification takes the public key and --insecure-ignore-tlog=true.
#
# PLAIN_HTTP=1 talks plain HTTP to the registry (crane --insecure, cosign
# --allow-http-registry, helm --plain-http); it is the default only for a
# registry on 127.0.0.1 or localhost (`make registry`), never guessed for
# another host. Credentials for a real registry are the clients' own:
# `crane auth login` (DOCKER_CONFIG, which cosign reads too) and
# `helm registry login`.
#
# The tools are built once and cached under $SECUREVAULT_CACHE (default
# ~/.cache/securevault): crane, cosign, helm, cargo-cyclonedx
# (tests/setup/*.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${SECUREVAULT_CACHE:-$HOME/.cache/securevault}
export SECUREVAULT_CACHE=$CACHE
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
export PATH="$HOME/.cargo/bin:$PATH"
log() { printf 'publish: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# ------------------------------------------------- what was asked for --
# Everything that can be checked before a build is, so a wrong call fails
# in a second rather than after the images are built.
REGISTRY=${REGISTRY:-}
[ -n "$REGISTRY" ] ||
  die "REGISTRY is not set: make publish REGISTRY=host:port COSIGN_KEY=cosign.key (make registry starts one on 127.0.0.1:5001)"
case "$REGISTRY" in
*://*) die "REGISTRY is host:port[/path], without a scheme (not '$REGISTRY'); PLAIN_HTTP=1 selects plain HTTP" ;;
esac
REGISTRY=${REGISTRY%/}
HOST=${REGISTRY%%/*}

COSIGN_KEY=${COSIGN_KEY:-}
[ -n "$COSIGN_KEY" ] ||
  die "COSIGN_KEY is not set: the cosign private key to sign with (make one with \`cosign generate-key-pair\`)"
case "$COSIGN_KEY" in
*://*) ;; # a KMS or Kubernetes secret reference: cosign resolves it
*)
  [ -f "$COSIGN_KEY" ] || die "COSIGN_KEY=$COSIGN_KEY: no such key file"
  COSIGN_KEY=$(realpath "$COSIGN_KEY")
  ;;
esac
# cosign asks on a terminal when the variable is unset; set (even empty) it
# never prompts.
export COSIGN_PASSWORD=${COSIGN_PASSWORD:-}

case "${PLAIN_HTTP:-}" in
"")
  case "${HOST%:*}" in
  127.* | localhost | "[::1]") PLAIN_HTTP=1 ;;
  *) PLAIN_HTTP=0 ;;
  esac
  ;;
0 | 1) ;;
*) die "PLAIN_HTTP must be 1 or 0, not '$PLAIN_HTTP'" ;;
esac
crane_flags=() cosign_flags=() helm_flags=() verify_flags=()
scheme=https
if [ "$PLAIN_HTTP" = 1 ]; then
  scheme=http
  crane_flags=(--insecure)
  cosign_flags=(--allow-http-registry --allow-insecure-registry)
  verify_flags=(--allow-http-registry)
  helm_flags=(--plain-http)
fi

# Any answer to /v2/ but a connection failure or a 404 is a registry (401:
# one that wants a login, which the clients then do from their config).
code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 "$scheme://$HOST/v2/" 2>/dev/null) || true
case "$code" in
200 | 401) ;;
000 | "") die "the registry $REGISTRY does not answer at $scheme://$HOST/v2/ (make registry starts one on 127.0.0.1:5001; PLAIN_HTTP=$PLAIN_HTTP)" ;;
*) die "$scheme://$HOST/v2/ answered HTTP $code: not an OCI registry" ;;
esac

VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
CHART=charts/securevault-operator
CHART_NAME=$(sed -n 's/^name: *//p' "$CHART/Chart.yaml" | head -n 1)
CHART_VERSION=$(sed -n 's/^version: *//p' "$CHART/Chart.yaml" | head -n 1)
if [ -z "$VERSION" ] || [ -z "$CHART_NAME" ] || [ -z "$CHART_VERSION" ]; then
  die "could not read the versions from Cargo.toml and $CHART/Chart.yaml"
fi

work=$(mktemp -d)
touch "$work/start"
# The SBOMs cargo-cyclonedx writes into the tree go, whatever happens.
trap 'find . -maxdepth 2 -name "*.cdx.json" -newer "$work/start" -delete; rm -rf "$work"' EXIT

# -------------------------------------------------------------- tools --
log "building the release tools if not cached (crane, cosign, helm, cargo-cyclonedx)"
CRANE=$(tests/setup/crane.sh)
COSIGN=$(tests/setup/cosign.sh)
HELM=$(tests/setup/helm.sh)
CYCLONEDX=$(tests/setup/cargo-cyclonedx.sh)

# ------------------------------------------------------------- images --
# The engine docker/build.sh uses when DOCKER_HOST is unset (and starts if
# needed), named here so that `docker save` below reaches the same one.
export DOCKER_HOST=${DOCKER_HOST:-unix://$CACHE/docker/docker.sock}
log "building the images (PROFILE=${PROFILE:-release})"
docker/build.sh >&2

# ------------------------------------------------------------- SBOMs --
# One per binary, from `cargo metadata`: the crates linked into it (no
# build-only dependencies), for the host target the binaries are built for.
# Dated by the commit, not by the build (no random serial number either).
# Run after the build, whose --locked leaves Cargo.lock as it is, so
# `cargo metadata` has nothing to update. cargo-cyclonedx writes beside
# each member's Cargo.toml; the files are moved out of the tree at once.
log "writing the CycloneDX SBOMs"
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH "$CYCLONEDX" cyclonedx --manifest-path Cargo.toml \
  --format json --spec-version 1.5 --no-build-deps --describe binaries -q >&2
for bin in dataplane operator; do
  [ -f "$bin/${bin}_bin.cdx.json" ] || die "cargo-cyclonedx wrote no $bin/${bin}_bin.cdx.json"
  mv "$bin/${bin}_bin.cdx.json" "$work/$bin.cdx.json"
done
find . -maxdepth 2 -name '*.cdx.json' -newer "$work/start" -delete

# ---------------------------------------------- push, sign, attest --
refs=()
for bin in dataplane operator; do
  image=$REGISTRY/securevault/$bin
  log "pushing $image:$VERSION"
  docker save -o "$work/$bin.tar" "securevault/$bin:$VERSION"
  "$CRANE" push "${crane_flags[@]}" "$work/$bin.tar" "$image:$VERSION" >/dev/null
  rm -f "$work/$bin.tar"
  digest=$("$CRANE" digest "${crane_flags[@]}" "$image:$VERSION")
  # By digest: a signature is bound to the content, and a tag can move.
  log "signing $image@$digest and attesting its SBOM"
  "$COSIGN" sign --key "$COSIGN_KEY" --use-signing-config=false --tlog-upload=false \
    "${cosign_flags[@]}" -y "$image@$digest" >&2
  "$COSIGN" attest --key "$COSIGN_KEY" --type cyclonedx --predicate "$work/$bin.cdx.json" \
    --use-signing-config=false --tlog-upload=false "${cosign_flags[@]}" -y "$image@$digest" >&2
  refs+=("$image:$VERSION@$digest")
done

# -------------------------------------------------------------- chart --
log "pushing the chart $CHART_NAME $CHART_VERSION"
"$HELM" package "$CHART" -d "$work" >&2
pushed=$("$HELM" push "$work/$CHART_NAME-$CHART_VERSION.tgz" "oci://$REGISTRY/charts" "${helm_flags[@]}" 2>&1) ||
  die "helm push failed: $pushed"
chart_digest=$(sed -n 's/^Digest: *//p' <<<"$pushed")
[ -n "$chart_digest" ] || die "helm push printed no digest: $pushed"
# The chart decides which images run, so it is signed too.
log "signing $REGISTRY/charts/$CHART_NAME@$chart_digest"
"$COSIGN" sign --key "$COSIGN_KEY" --use-signing-config=false --tlog-upload=false \
  "${cosign_flags[@]}" -y "$REGISTRY/charts/$CHART_NAME@$chart_digest" >&2
refs+=("oci://$REGISTRY/charts/$CHART_NAME:$CHART_VERSION@$chart_digest")

# ------------------------------------------------------------ summary --
# The public key beside a key file made by `cosign generate-key-pair`.
case "$COSIGN_KEY" in
*://*) pub=$COSIGN_KEY ;;
*) pub=${COSIGN_KEY%.key}.pub ;;
esac
if [[ $pub != *://* && ! -f $pub ]]; then
  log "no $pub beside the key: cosign public-key --key $COSIGN_KEY > cosign.pub"
  pub=cosign.pub
fi
printf '%s\n' "${refs[@]}"
printf '\nVerify the signatures and the SBOM attestations (no transparency log: --insecure-ignore-tlog=true):\n'
for ref in "${refs[@]:0:2}"; do
  by_digest=${ref%:"$VERSION"@*}@${ref##*@}
  printf '  cosign verify --key %s --insecure-ignore-tlog=true %s%s\n' \
    "$pub" "${verify_flags[*]/%/ }" "$by_digest"
  printf '  cosign verify-attestation --key %s --type cyclonedx --insecure-ignore-tlog=true %s%s\n' \
    "$pub" "${verify_flags[*]/%/ }" "$by_digest"
done
printf '  cosign verify --key %s --insecure-ignore-tlog=true %s%s\n' \
  "$pub" "${verify_flags[*]/%/ }" "$REGISTRY/charts/$CHART_NAME@$chart_digest"
printf '\nInstall the chart:\n  helm install securevault-operator oci://%s/charts/%s --version %s%s\n' \
  "$REGISTRY" "$CHART_NAME" "$CHART_VERSION" "${helm_flags[*]/#/ }"
