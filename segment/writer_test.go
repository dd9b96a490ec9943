package segment

import (
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/wal"
	"github.com/rago-raft/rago/wal/walfs"
	"github.com/stretchr/testify/require"
)

// TestWriterFlushesNotifiesAndRemoves runs the real processes: WAL files
// closed by rollover reach the segment writer, which makes them durable,
// tells the server, and hands the files back to the WAL, which starts a
// later file over them; the log reads the same before and after.
func TestWriterFlushesNotifiesAndRemoves(t *testing.T) {
	node, err := actor.StartNode(actor.Config{Address: "127.0.0.1:0"})
	require.NoError(t, err)
	defer node.Stop()
	store, err := Open("/seg", Options{FS: vfs.NewMem()})
	require.NoError(t, err)
	defer store.Close()
	sw, err := StartWriter(node, store, WriterOptions{})
	require.NoError(t, err)
	fs := walfs.NewMem()
	cfg := wal.DefaultConfig("/wal")
	cfg.FS = fs
	cfg.MaxFileBytes = 64 << 10 // spares ready in a moment
	w, err := wal.Start(node, cfg, wal.StartOptions{SegmentWriter: sw.Ref()})
	require.NoError(t, err)
	server, err := node.NewInbox()
	require.NoError(t, err)
	defer server.Close()
	wr, err := w.Register("srv", server.Ref())
	require.NoError(t, err)
	log := NewLog("srv", store, func() *wal.MemLog { return w.Mem("srv") })

	write := func(i uint64) {
		require.NoError(t, wr.Write(wal.Entry{Index: i, Term: 1, Payload: []byte{byte(i)}}))
		m, err := server.ReceiveTimeout(10 * time.Second)
		require.NoError(t, err)
		require.Equal(t, wal.Written{UID: "srv", Term: 1, From: i, To: i}, m)
	}
	for i := uint64(1); i <= 5; i++ {
		write(i)
	}
	require.NoError(t, w.Rollover())
	write(6)
	m, err := server.ReceiveTimeout(10 * time.Second)
	require.NoError(t, err)
	require.Equal(t, Flushed{UID: "srv", First: 1, Last: 5}, m)
	st := store.Stats()
	require.Equal(t, [2]int64{1, 5}, [2]int64{st.Flushes, st.Entries}, "the writer flushed one file of 5 entries")
	// The file goes after the servers are told (durability first, then
	// tables dropped and servers told, then the file), so wait for it.
	require.Eventually(t, func() bool {
		names, err := fs.List("/wal")
		files := 0
		for _, name := range names {
			if strings.HasSuffix(name, ".wal") { // not the WAL's prepared spare
				files++
			}
		}
		return err == nil && files == 1
	}, 10*time.Second, time.Millisecond, "the flushed file is removed")
	_, p := w.Mem("srv").View().Get(3)
	require.Equal(t, wal.Unknown, p, "flushed tables are dropped")
	first, last, term, ok, err := log.Bounds()
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, [3]uint64{1, 6, 1}, [3]uint64{first, last, term})
	e, err := log.Entry(3)
	require.NoError(t, err)
	require.Equal(t, []byte{3}, e.Payload)

	// The store copied the file's entries, so the WAL kept the file to
	// write over, and starts a later file over it.
	names, err := fs.List("/wal")
	require.NoError(t, err)
	require.Contains(t, names, "free-00000000000000000001", "the flushed file is kept to be written over")
	i := uint64(7)
	for ; w.Stats().Recycled == 0; i++ {
		require.Less(t, i, uint64(1000), "no file started over a flushed one")
		require.NoError(t, w.Rollover())
		require.NoError(t, wr.Write(wal.Entry{Index: i, Term: 1, Payload: []byte{byte(i)}}))
		for { // Flushed notices of earlier files may come first
			m, err := server.ReceiveTimeout(10 * time.Second)
			require.NoError(t, err)
			if m == (wal.Written{UID: "srv", Term: 1, From: i, To: i}) {
				break
			}
			require.IsType(t, Flushed{}, m)
		}
		time.Sleep(time.Millisecond) // time for the next file's preparation
	}
	e, err = log.Entry(7)
	require.NoError(t, err)
	require.Equal(t, []byte{7}, e.Payload)

	require.NoError(t, w.Stop(10*time.Second))
	require.NoError(t, sw.Stop(10*time.Second))
}

// TestDeleteServerData: after Forget and DeleteUID, records of the UID
// still in WAL files never come back, neither at flush nor after restart.
func TestDeleteServerData(t *testing.T) {
	node, err := actor.StartNode(actor.Config{Address: "127.0.0.1:0"})
	require.NoError(t, err)
	defer node.Stop()
	segFS := vfs.NewMem()
	store, err := Open("/seg", Options{FS: segFS})
	require.NoError(t, err)
	sw, err := StartWriter(node, store, WriterOptions{})
	require.NoError(t, err)
	fs := walfs.NewMem()
	cfg := wal.DefaultConfig("/wal")
	cfg.FS = fs
	w, err := wal.Start(node, cfg, wal.StartOptions{SegmentWriter: sw.Ref()})
	require.NoError(t, err)
	server, err := node.NewInbox()
	require.NoError(t, err)
	defer server.Close()
	for _, uid := range []string{"gone", "kept"} {
		wr, err := w.Register(uid, server.Ref())
		require.NoError(t, err)
		require.NoError(t, wr.Write(wal.Entry{Index: 1, Term: 1, Payload: []byte(uid)}))
		_, err = server.ReceiveTimeout(10 * time.Second)
		require.NoError(t, err)
	}
	require.NoError(t, w.Forget("gone"))
	require.NoError(t, store.DeleteUID("gone"))
	require.NoError(t, w.Stop(10*time.Second))
	require.NoError(t, sw.Stop(10*time.Second))
	require.NoError(t, store.Close())

	// Restart: the WAL file with both UIDs is replayed and flushed.
	store, err = Open("/seg", Options{FS: segFS})
	require.NoError(t, err)
	defer store.Close()
	sw, err = StartWriter(node, store, WriterOptions{Name: "sw2"})
	require.NoError(t, err)
	w, err = wal.Start(node, cfg, wal.StartOptions{Name: "wal2", SegmentWriter: sw.Ref()})
	require.NoError(t, err)
	require.NoError(t, w.Stop(10*time.Second))
	require.NoError(t, sw.Stop(10*time.Second)) // returns after the recovered file was flushed
	_, _, ok, err := store.Bounds("gone")
	require.NoError(t, err)
	require.False(t, ok)
	_, last, ok, err := store.Bounds("kept")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, uint64(1), last)
	names, err := fs.List("/wal")
	require.NoError(t, err)
	require.Empty(t, names)
}
