//go:build tools

// Package tools pins etcd's server command, which tests/cluster/cluster.sh
// builds for the test control plane (`go build go.etcd.io/etcd/server/v3`:
// the server module has its main package at its root). The build tag keeps
// this file out of every build; it exists so that `go mod tidy` keeps the
// package and go.sum covers it.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
