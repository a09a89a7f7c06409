#!/usr/bin/env bash
# The loopback control plane (etcd, kube-apiserver, kube-controller-manager). The script
# ships inside the package, so `unthrottle demo` works from an installed wheel too; this
# is the checkout's entry point to it. Usage: scripts/kube-sandbox.sh help
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../operator/unthrottle/sandbox/assets/kube-sandbox.sh" "$@"
