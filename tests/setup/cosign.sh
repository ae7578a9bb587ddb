#!/usr/bin/env bash
# cosign v3, built from its Go module and cached as bin/cosign-VERSION/cosign
# by go-install.sh (no replace directives). Prints its path.
#
# Signs the published images and attaches their SBOMs as signed
# attestations, with a key pair: keyless signing needs Sigstore's services on
# the Internet. The first build is the largest of the release tools (about
# 270 modules); later runs find the cached binary.
#
# Never add a `go list -m all` check here: the module graph names two modules
# the proxy refuses (via buildkite/agent), which the build does not need, so
# listing the graph fails where installing succeeds.
exec "$(dirname "$0")/go-install.sh" cosign github.com/sigstore/cosign/v3 \
  github.com/sigstore/cosign/v3/cmd/cosign v3.1.3
