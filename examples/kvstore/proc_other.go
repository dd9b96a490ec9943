//go:build !unix

package main

import (
	"fmt"
	"os"
)

// demoSignal supports only kill where there are no POSIX signals.
func demoSignal(verb string) (os.Signal, error) {
	if verb == "kill" {
		return os.Kill, nil
	}
	return nil, fmt.Errorf("%s needs POSIX signals, which this system lacks", verb)
}
