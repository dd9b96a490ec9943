//go:build !unix

package demoproc

import (
	"os"
	"os/exec"
)

// setProcessGroup does nothing where process groups do not exist.
func setProcessGroup(*exec.Cmd) {}

// resume does nothing where processes cannot be frozen.
func resume(*os.Process) {}
