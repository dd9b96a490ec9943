//go:build linux

package walfs

import (
	"os"
	"syscall"
)

// datasync calls fdatasync(2), retrying on EINTR.
func datasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}
