//go:build !linux

package kubetest

import "syscall"

// sysProcAttr has no parent-death signal outside Linux; cleanups still stop
// every child.
func sysProcAttr() *syscall.SysProcAttr { return nil }
