//go:build unix

package demoproc

import (
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

// resume lets a frozen process (SIGSTOP) run again, so that it can hear
// SIGTERM.
func resume(p *os.Process) { _ = p.Signal(syscall.SIGCONT) }
