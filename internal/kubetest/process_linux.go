package kubetest

import "syscall"

// sysProcAttr makes the kernel SIGKILL a child when the test binary dies
// (for example on a test timeout panic), so no control-plane process outlives
// the test that started it even when cleanups never run. (The signal follows
// the OS thread that forked; the Go runtime does not retire threads of
// goroutines that are not locked to one, so in tests this holds.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
