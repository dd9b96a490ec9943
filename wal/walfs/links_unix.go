//go:build unix

package walfs

import (
	"os"
	"syscall"
)

// linkCount returns how many names link to the file fi describes.
func linkCount(fi os.FileInfo) (uint64, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return uint64(st.Nlink), true
}
