//go:build !unix

package main

import (
	"fmt"
	"os"
	"os/exec"
)

// setProcessGroup does nothing where process groups do not exist.
func setProcessGroup(*exec.Cmd) {}

// demoSignal supports only kill where there are no POSIX signals.
func demoSignal(verb string) (os.Signal, error) {
	if verb == "kill" {
		return os.Kill, nil
	}
	return nil, fmt.Errorf("%s needs POSIX signals, which this system lacks", verb)
}

func resume(*os.Process) {}
