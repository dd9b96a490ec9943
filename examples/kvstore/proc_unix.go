//go:build unix

package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// setProcessGroup puts a node in a process group of its own, so that the
// Ctrl-C of the terminal reaches only the demo, which then stops the nodes
// one by one (a node that got the terminal's SIGINT and then the demo's
// SIGTERM would take the second signal as "exit now").
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// demoSignal maps a demo command to its signal.
func demoSignal(verb string) (os.Signal, error) {
	switch verb {
	case "kill":
		return syscall.SIGKILL, nil
	case "stop":
		return syscall.SIGSTOP, nil
	case "cont":
		return syscall.SIGCONT, nil
	}
	return nil, fmt.Errorf("no signal for %q", verb)
}

// resume lets a frozen process run again, so that it can hear SIGTERM.
func resume(p *os.Process) { _ = p.Signal(syscall.SIGCONT) }
