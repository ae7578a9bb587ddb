#!/usr/bin/env bash
# vegeta v12, the constant-rate HTTP load generator, built from its Go module
# and cached as bin/vegeta-VERSION/vegeta by go-install.sh. Prints its path.
# Only `make benchmark` uses it (tests/bench/gateway-benchmark.sh): a closed
# loop like wrk's slows down with the server and hides its queueing, while
# vegeta keeps sending at the rate asked and measures each request from when
# it was due.
set -euo pipefail
exec "$(dirname "$0")/go-install.sh" vegeta github.com/tsenart/vegeta/v12 \
  github.com/tsenart/vegeta/v12 v12.13.0
