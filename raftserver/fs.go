package raftserver

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// makeDataDirs creates dataDir and the named directories in it on fsys, and
// makes them durable: a new directory entry survives a crash only once its
// parent is synced, and without that a crash soon after a node's first
// start could lose its whole data directory. It syncs dataDir and its
// parent on every start, since a directory that exists may still not be
// durable (an earlier start may have died before its syncs), and the
// parent of every other directory it creates.
func makeDataDirs(fsys vfs.FS, dataDir string, subdirs ...string) error {
	dataDir = filepath.Clean(dataDir)
	var missing []string // dataDir's missing ancestors, deepest first
	for d := fsys.PathDir(dataDir); ; {
		_, err := fsys.Stat(d)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("create %s: %w", dataDir, err)
		}
		missing = append(missing, d)
		parent := fsys.PathDir(d)
		if parent == d {
			break
		}
		d = parent
	}
	for _, sub := range subdirs {
		if err := fsys.MkdirAll(fsys.PathJoin(dataDir, sub), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", fsys.PathJoin(dataDir, sub), err)
		}
	}
	// Deepest first, so that no durable entry names a directory whose own
	// new entries are not durable yet.
	syncs := []string{dataDir, fsys.PathDir(dataDir)}
	for _, d := range missing {
		syncs = append(syncs, fsys.PathDir(d))
	}
	for _, d := range syncs {
		f, err := fsys.OpenDir(d)
		if err != nil {
			return fmt.Errorf("sync directory %s: %w", d, err)
		}
		serr := f.Sync()
		cerr := f.Close()
		if err := errors.Join(serr, cerr); err != nil {
			return fmt.Errorf("sync directory %s: %w", d, err)
		}
	}
	return nil
}
