//go:build !unix

package main

import (
	"os"
	"os/exec"
)

// setProcessGroup does nothing where process groups do not exist.
func setProcessGroup(*exec.Cmd) {}

// demoKill is the signal of the demo's kill command.
var demoKill os.Signal = os.Kill

func resume(*os.Process) {}
