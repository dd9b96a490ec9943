package snapshot

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCorruptNewestIsSkippedForAnOlderValidOne(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{BlockBytes: 32, Keep: 2})
	old := writeSnap(t, s, "u", 10, 1, []byte("old"), pattern(10, 300), 300)
	newer := writeSnap(t, s, "u", 20, 2, []byte("new"), pattern(20, 300), 300)
	path := filepath.Join(s.Dir(), "u", snapName(20, 2))
	flipBit(t, path, 8*200)

	info, corrupt, err := s.Latest("u")
	require.NoError(t, err)
	require.Equal(t, old, info)
	require.Len(t, corrupt, 1)
	require.Equal(t, path, corrupt[0].File)
	require.ErrorIs(t, corrupt[0], ErrCorrupt)
	meta, data, err := readAll(s, info)
	require.NoError(t, err)
	require.Equal(t, "old", string(meta))
	require.Equal(t, pattern(10, 300), data)

	// The corrupt file is set aside, never considered again...
	names := dirNames(t, s, "u")
	require.Contains(t, names, snapName(20, 2)+".corrupt")
	require.NotContains(t, names, snapName(20, 2))
	info, corrupt, err = s.Latest("u")
	require.NoError(t, err)
	require.Empty(t, corrupt)
	require.Equal(t, old, info)
	_, err = s.Open(newer)
	require.ErrorIs(t, err, ErrNotFound)
	// ...but is still known for what it covered.
	aside, err := s.SetAside("u")
	require.NoError(t, err)
	require.Equal(t, []Info{{UID: "u", Index: 20, Term: 2}}, aside)

	// ...a snapshot at the same index can be installed again, and the
	// next durable snapshot removes the corrupt file.
	again := writeSnap(t, s, "u", 20, 2, []byte("again"), pattern(21, 10), 10)
	require.NotContains(t, dirNames(t, s, "u"), snapName(20, 2)+".corrupt")
	aside, err = s.SetAside("u")
	require.NoError(t, err)
	require.Empty(t, aside)
	info, _, err = s.Latest("u")
	require.NoError(t, err)
	require.Equal(t, again, info)
}

func TestNoValidSnapshot(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	_, corrupt, err := s.Latest("nobody")
	require.ErrorIs(t, err, ErrNotFound)
	require.Empty(t, corrupt)

	writeSnap(t, s, "u", 3, 1, nil, pattern(3, 100), 100)
	path := filepath.Join(s.Dir(), "u", snapName(3, 1))
	require.NoError(t, os.Truncate(path, 60))
	_, corrupt, err = s.Latest("u")
	require.ErrorIs(t, err, ErrNotFound)
	require.Len(t, corrupt, 1)
	require.Contains(t, corrupt[0].Reason, "truncated")
}

func TestOldSnapshotsAreRemoved(t *testing.T) {
	for _, keep := range []int{1, 2} {
		s := openStore(t, t.TempDir(), Options{Keep: keep})
		for i := uint64(1); i <= 5; i++ {
			writeSnap(t, s, "u", i*10, 1, nil, pattern(i, 1000), 1000)
		}
		list, err := s.List("u")
		require.NoError(t, err)
		require.Len(t, list, keep)
		require.Equal(t, uint64(50), list[0].Index)
		if keep == 2 {
			require.Equal(t, uint64(40), list[1].Index)
		}
		require.Len(t, dirNames(t, s, "u"), keep, "keep %d", keep)
	}
}

func TestStale(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	writeSnap(t, s, "u", 10, 1, nil, nil, 1)
	_, err := s.Begin("u", 10, 1, nil)
	require.ErrorIs(t, err, ErrStale)
	_, err = s.Begin("u", 9, 1, nil)
	require.ErrorIs(t, err, ErrStale)

	// A write overtaken by a newer snapshot fails at Commit and leaves
	// nothing behind.
	p, err := s.Begin("u", 11, 1, nil)
	require.NoError(t, err)
	_, err = p.Write([]byte("x"))
	require.NoError(t, err)
	writeSnap(t, s, "u", 12, 1, nil, nil, 1)
	_, err = p.Commit()
	require.ErrorIs(t, err, ErrStale)
	require.Equal(t, []string{snapName(12, 1)}, dirNames(t, s, "u"))
	_, err = p.Commit()
	require.ErrorIs(t, err, ErrFinished)
	_, err = p.Write([]byte("x"))
	require.ErrorIs(t, err, ErrFinished)
}

func TestInvalidArguments(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	for _, uid := range []string{"", "a/b", "..", "a b", string(make([]byte, 256))} {
		_, err := s.Begin(uid, 1, 1, nil)
		require.ErrorIs(t, err, ErrInvalid, "uid %q", uid)
		_, _, err = s.Latest(uid)
		require.ErrorIs(t, err, ErrInvalid)
		require.ErrorIs(t, s.Delete(uid), ErrInvalid)
	}
	_, err := s.Begin("u", 0, 1, nil)
	require.ErrorIs(t, err, ErrInvalid)
	_, err = Open(t.TempDir(), Options{BlockBytes: MaxBlockBytes + 1})
	require.ErrorIs(t, err, ErrInvalid)
	_, err = Open(t.TempDir(), Options{Keep: -1})
	require.ErrorIs(t, err, ErrInvalid)
}

func TestCrashLeftoversAreCleanedAtOpen(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{BlockBytes: 64})
	good := writeSnap(t, s, "u", 5, 1, []byte("m"), pattern(5, 500), 500)

	// A crash while writing index 6 (half a file), one after writing
	// index 7 completely but before its rename, and a partly received
	// snapshot.
	p, err := s.Begin("u", 6, 1, nil)
	require.NoError(t, err)
	_, err = p.Write(pattern(6, 300))
	require.NoError(t, err)
	p2, err := s.Begin("u", 7, 1, nil)
	require.NoError(t, err)
	_, err = p2.Write(pattern(7, 300))
	require.NoError(t, err)
	require.NoError(t, p2.enc.flushBlock())
	part := filepath.Join(dir, "u", partName(9, 1, 0xabc))
	require.NoError(t, os.WriteFile(part, []byte("partial"), 0o644))
	useless := filepath.Join(dir, "u", partName(5, 1, 0xdef))
	require.NoError(t, os.WriteFile(useless, []byte("partial"), 0o644))
	require.Equal(t, 2, countSuffix(dirNames(t, s, "u"), ".tmp"))
	// (p and p2 are abandoned as a crash would.)

	s2 := openStore(t, dir, Options{})
	names := dirNames(t, s2, "u")
	require.Zero(t, countSuffix(names, ".tmp"))
	require.Contains(t, names, filepath.Base(part), "partial transfers are kept for resume")
	require.NotContains(t, names, filepath.Base(useless), "unless a durable snapshot covers them")
	info, corrupt, err := s2.Latest("u")
	require.NoError(t, err)
	require.Empty(t, corrupt)
	require.Equal(t, good, info)
}

func TestDelete(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	writeSnap(t, s, "u", 5, 1, nil, pattern(1, 10), 10)
	writeSnap(t, s, "v", 5, 1, nil, pattern(1, 10), 10)
	p, err := s.Begin("u", 6, 1, nil)
	require.NoError(t, err)
	_, err = p.Write([]byte("in flight"))
	require.NoError(t, err)

	require.NoError(t, s.Delete("u"))
	_, err = os.Stat(filepath.Join(s.Dir(), "u"))
	require.ErrorIs(t, err, os.ErrNotExist)
	_, _, err = s.Latest("u")
	require.ErrorIs(t, err, ErrNotFound)
	_, _, err = s.Latest("v")
	require.NoError(t, err, "other UIDs are untouched")

	// The write in flight cannot resurrect the UID.
	_, err = p.Commit()
	require.Error(t, err)
	require.True(t, errors.Is(err, ErrDeleted) || errors.Is(err, ErrIO), "got %v", err)
	_, err = os.Stat(filepath.Join(s.Dir(), "u", snapName(6, 1)))
	require.ErrorIs(t, err, os.ErrNotExist)

	// A deleted UID can be written again, and deleting twice is fine.
	writeSnap(t, s, "u", 1, 1, nil, nil, 1)
	require.NoError(t, s.Delete("u"))
	require.NoError(t, s.Delete("u"))
}

func TestDeleteBeforeCommitIsErrDeleted(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	p, err := s.Begin("u", 6, 1, nil)
	require.NoError(t, err)
	require.NoError(t, p.enc.flushBlock())
	// Keep the directory (as if Delete raced with a rename) so the
	// generation check is what refuses the commit.
	st := s.state("u")
	st.mu.Lock()
	st.gen++
	st.mu.Unlock()
	_, err = p.Commit()
	require.ErrorIs(t, err, ErrDeleted)
	require.Empty(t, dirNames(t, s, "u"))
}

func TestWriteErrorsLeaveNothingVisible(t *testing.T) {
	cases := []struct {
		name   string
		inject func(f *faultFS)
		want   error
	}{
		{"disk full", func(f *faultFS) { f.writeBudget = 1000 }, syscall.ENOSPC},
		{"sync fails", func(f *faultFS) { f.failSync = true }, syscall.EIO},
		{"rename fails", func(f *faultFS) { f.failRename = true }, syscall.EIO},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ffs := newFaultFS()
			s := openStore(t, t.TempDir(), Options{FS: ffs, BlockBytes: 256})
			prev := writeSnap(t, s, "u", 1, 1, nil, pattern(1, 100), 100)
			ffs.set(tc.inject)
			p, err := s.Begin("u", 2, 1, []byte("meta"))
			require.NoError(t, err)
			_, werr := p.Write(pattern(2, 5000))
			_, err = p.Commit()
			require.ErrorIs(t, err, ErrIO)
			require.ErrorIs(t, err, tc.want)
			if werr != nil {
				require.ErrorIs(t, werr, tc.want)
			}
			require.Equal(t, []string{snapName(1, 1)}, dirNames(t, s, "u"), "the temp file is removed")
			info, _, err := s.Latest("u")
			require.NoError(t, err)
			require.Equal(t, prev, info)

			// Once the fault is gone the store works again.
			ffs.set(func(f *faultFS) { f.writeBudget, f.failSync, f.failRename = -1, false, false })
			writeSnap(t, s, "u", 3, 1, nil, pattern(3, 100), 100)
		})
	}
}

func TestConcurrentReaders(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{BlockBytes: 4096})
	const size = 200_000
	writeSnap(t, s, "u", 1, 1, []byte("1"), pattern(1, size), 50_000)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 15; i++ {
				info, _, err := s.Latest("u")
				if err != nil {
					errs <- err
					return
				}
				r, err := s.Open(info)
				if errors.Is(err, ErrNotFound) {
					continue // pruned between Latest and Open
				}
				if err != nil {
					errs <- err
					return
				}
				// Read slowly in small pieces so pruning happens while
				// the file is open.
				got, err := io.ReadAll(io.LimitReader(r, size+1))
				_ = r.Close()
				if err != nil {
					errs <- err
					return
				}
				if string(r.Meta()) != itoa(int64(info.Index)) || !bytes.Equal(got, pattern(info.Index, size)) {
					errs <- errors.New("reader saw data of another snapshot")
					return
				}
			}
		}()
	}
	for i := uint64(2); i <= 30; i++ {
		writeSnap(t, s, "u", i, 1, []byte(itoa(int64(i))), pattern(i, size), 50_000)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func TestReaderAfterClose(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{BlockBytes: 10})
	info := writeSnap(t, s, "u", 1, 1, nil, pattern(1, 100), 100)
	r, err := s.Open(info)
	require.NoError(t, err)
	require.Equal(t, info.ID, r.Info().ID)
	require.Equal(t, info.Size, r.Info().Size)
	buf := make([]byte, 5)
	_, err = r.Read(buf)
	require.NoError(t, err)
	require.NoError(t, r.Close())
	require.NoError(t, r.Close())
	_, err = r.Read(buf)
	require.ErrorIs(t, err, ErrFinished)

	// An Info whose ID does not match the file is refused.
	wrong := info
	wrong.ID++
	_, err = s.Open(wrong)
	require.ErrorIs(t, err, ErrCorrupt)
}
