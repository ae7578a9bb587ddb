//go:build tools

// Package tools pins the Kubernetes commands that tests/cluster/cluster.sh
// builds for the test control plane, and the kubelet and kube-proxy that
// tests/cluster/node.sh builds for a real node (NODE=real). Nothing imports
// this file (the build tag keeps it out of every build); it exists so that
// `go mod tidy` keeps these commands' packages, and so go.sum covers
// everything `go build` needs for them.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"

	// The Prometheus Operator, run by the test that has it turn our
	// ServiceMonitor and PrometheusRule into a Prometheus configuration
	// (tests/setup/prometheus-operator.sh builds it).
	_ "github.com/prometheus-operator/prometheus-operator/cmd/operator"
)
