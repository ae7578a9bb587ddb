#!/usr/bin/env bash
# Helm v4, built from its Go module (helm has no replace directives) and
# cached as bin/helm-VERSION/helm by go-install.sh. Prints its path.
exec "$(dirname "$0")/go-install.sh" helm helm.sh/helm/v4 helm.sh/helm/v4/cmd/helm v4.3.1
