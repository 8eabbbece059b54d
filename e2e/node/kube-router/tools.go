//go:build tools

// Package tools pins kube-router, whose network policy controller (run alone:
// --run-firewall, no routing, no service proxy) enforces NetworkPolicies on
// the e2e node with iptables and ipsets.
package tools

import _ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
