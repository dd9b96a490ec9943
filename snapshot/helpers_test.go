package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

func openStore(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	require.NoError(t, err)
	return s
}

// pattern returns n bytes that differ with seed and position.
func pattern(seed uint64, n int) []byte {
	b := make([]byte, n)
	x := seed*0x9e3779b97f4a7c15 + 1
	for i := 0; i < n; i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], x)
		copy(b[i:], w[:])
	}
	return b
}

// writeSnap writes a snapshot through Begin/Write/Commit, feeding data in
// pieces of step bytes.
func writeSnap(t testing.TB, s *Store, uid string, index, term uint64, meta, data []byte, step int) Info {
	t.Helper()
	p, err := s.Begin(uid, index, term, meta)
	require.NoError(t, err)
	for len(data) > 0 {
		n := min(step, len(data))
		k, err := p.Write(data[:n])
		require.NoError(t, err)
		require.Equal(t, n, k)
		data = data[n:]
	}
	info, err := p.Commit()
	require.NoError(t, err)
	return info
}

// readAll opens info and returns meta and data, or the first error.
func readAll(s *Store, info Info) ([]byte, []byte, error) {
	r, err := s.Open(info)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	return r.Meta(), data, err
}

// dirNames lists a UID directory.
func dirNames(t testing.TB, s *Store, uid string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(s.Dir(), uid))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func countSuffix(names []string, suffix string) int {
	n := 0
	for _, name := range names {
		if strings.HasSuffix(name, suffix) {
			n++
		}
	}
	return n
}

// faultFS wraps OSFS and injects failures. Zero fields inject nothing.
type faultFS struct {
	OSFS
	mu sync.Mutex
	// writeBudget, when >= 0, is how many more bytes writes may put in
	// files whose name ends in suffix before failing with ENOSPC.
	writeBudget int64
	failSync    bool
	failRename  bool
	suffix      string
}

func newFaultFS() *faultFS { return &faultFS{writeBudget: -1, suffix: ".tmp"} }

func (f *faultFS) set(fn func(f *faultFS)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *faultFS) OpenFile(name string, flag int) (File, error) {
	file, err := f.OSFS.OpenFile(name, flag)
	if err != nil || !strings.HasSuffix(name, f.suffix) {
		return file, err
	}
	return &faultFile{File: file, fs: f}, nil
}

func (f *faultFS) Rename(oldname, newname string) error {
	f.mu.Lock()
	fail := f.failRename
	f.mu.Unlock()
	if fail {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: syscall.EIO}
	}
	return f.OSFS.Rename(oldname, newname)
}

type faultFile struct {
	File
	fs *faultFS
}

func (f *faultFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	budget := f.fs.writeBudget
	if budget >= 0 {
		allowed := min(int64(len(p)), budget)
		f.fs.writeBudget -= allowed
		f.fs.mu.Unlock()
		n, err := f.File.Write(p[:allowed])
		if err == nil && int64(len(p)) > allowed {
			err = syscall.ENOSPC
		}
		return n, err
	}
	f.fs.mu.Unlock()
	return f.File.Write(p)
}

func (f *faultFile) Sync() error {
	f.fs.mu.Lock()
	fail := f.fs.failSync
	f.fs.mu.Unlock()
	if fail {
		return syscall.EIO
	}
	return f.File.Sync()
}

// flipBit flips one bit of a file in place.
func flipBit(t testing.TB, path string, bit int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	b[bit/8] ^= 1 << (bit % 8)
	require.NoError(t, os.WriteFile(path, b, 0o644))
}

// isPrefix reports whether got is a prefix of want.
func isPrefix(got, want []byte) bool {
	return len(got) <= len(want) && bytes.Equal(got, want[:len(got)])
}
