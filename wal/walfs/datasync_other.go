//go:build !linux

package walfs

import "os"

// datasync falls back to fsync where fdatasync is not available.
func datasync(f *os.File) error { return f.Sync() }

// startWriteback does nothing here: the final sync writes everything.
func startWriteback(*os.File, int64, int64) {}
