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

// startWriteback asks the kernel to start writing [off, off+n) of f to
// disk without waiting (sync_file_range with SYNC_FILE_RANGE_WRITE). It
// is only a hint, so its error is ignored: the final sync decides.
func startWriteback(f *os.File, off, n int64) {
	_ = syscall.SyncFileRange(int(f.Fd()), off, n, syncFileRangeWrite)
}

// syncFileRangeWrite is SYNC_FILE_RANGE_WRITE from linux/fs.h.
const syncFileRangeWrite = 2
