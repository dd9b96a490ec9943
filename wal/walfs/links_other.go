//go:build !unix

package walfs

import "os"

// linkCount does not know links here: files are taken to have one.
func linkCount(os.FileInfo) (uint64, bool) { return 0, false }
