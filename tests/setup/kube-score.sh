#!/usr/bin/env bash
# kube-score (static checks of Kubernetes objects: resources, probes,
# security contexts, network policies, disruption budgets, …), built from its
# Go module and cached as bin/kube-score-VERSION/kube-score by
# go-install.sh. Prints its path.
#
# Why not kube-linter: its module (golang.stackrox.io/kube-linter) is not
# served by the Go module proxy this project builds from, and it publishes no
# package in any other registry we reach. kube-score is the linter of the same
# kind that is: github.com/zegl/kube-score, whose go.mod has no replace
# directives, so `go install pkg@version` builds it as released.
exec "$(dirname "$0")/go-install.sh" kube-score github.com/zegl/kube-score github.com/zegl/kube-score/cmd/kube-score v1.20.0
