#!/usr/bin/env bash
# crane (go-containerregistry), built from its Go module and cached as
# bin/crane-VERSION/crane by go-install.sh. Prints its path.
#
# One binary for both ends of publishing: `crane registry serve` is the OCI
# registry of `make registry` and of the publish test (plain HTTP, no auth,
# blobs on disk, manifests in memory), and `crane push` uploads the
# docker-saved image archives. Chosen over distribution's registry for its
# build: 13 modules to compile against about 100.
exec "$(dirname "$0")/go-install.sh" crane github.com/google/go-containerregistry \
  github.com/google/go-containerregistry/cmd/crane v0.22.1
