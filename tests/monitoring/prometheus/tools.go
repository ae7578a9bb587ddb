//go:build tools

// Package tools pins the Prometheus server that
// tests/setup/prometheus-operator.sh builds. Nothing imports this file (the
// build tag keeps it out of every build); it exists so that `go mod tidy`
// keeps the command's packages, and so go.sum covers what `go build` needs.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
)
