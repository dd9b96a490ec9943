//go:build unix

package main

import (
	"fmt"
	"os"
	"syscall"
)

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
