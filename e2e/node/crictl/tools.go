//go:build tools

// Package tools pins crictl, which the e2e node uses to remove every pod
// sandbox (containers, network namespaces, CNI state) on tear-down.
package tools

import _ "sigs.k8s.io/cri-tools/cmd/crictl"
