//go:build tools

// Package tools pins the kubelet this module builds (see e2e/node/README.md:
// 1.35 is the last Kubernetes release whose kubelet supports containerd 1.x,
// which is what Debian ships).
package tools

import _ "k8s.io/kubernetes/cmd/kubelet"
