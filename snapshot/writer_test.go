package snapshot

import (
	"errors"
	"io"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/actor"
)

const waitFor = 10 * time.Second

func startNode(t testing.TB) *actor.Node {
	t.Helper()
	n, err := actor.StartNode(actor.Config{Address: "127.0.0.1:0", ShutdownTimeout: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(n.Stop)
	return n
}

func newInbox(t testing.TB, n *actor.Node) *actor.Inbox {
	t.Helper()
	ib, err := n.NewInbox()
	require.NoError(t, err)
	return ib
}

// recv waits for the next message on ib and requires it to be a T.
func recv[T any](t testing.TB, ib *actor.Inbox) T {
	t.Helper()
	m, err := ib.ReceiveTimeout(waitFor)
	require.NoError(t, err, "waiting for %T", *new(T))
	v, ok := m.(T)
	require.True(t, ok, "want %T, got %T: %+v", *new(T), m, m)
	return v
}

// testSource is a Source with hooks: it can announce that WriteTo started,
// wait for a go-ahead, write data (or forever, until an error), fail or
// panic. It counts Release calls.
type testSource struct {
	data     []byte
	started  chan struct{} // closed when WriteTo starts, if set
	proceed  chan struct{} // WriteTo waits for it, if set
	forever  bool          // write until w fails
	fail     error
	panicMsg string
	released atomic.Int32
}

func (s *testSource) WriteTo(w io.Writer) (int64, error) {
	if s.started != nil {
		close(s.started)
	}
	if s.proceed != nil {
		<-s.proceed
	}
	if s.panicMsg != "" {
		panic(s.panicMsg)
	}
	if s.fail != nil {
		return 0, s.fail
	}
	var total int64
	for {
		n, err := w.Write(s.data)
		total += int64(n)
		if err != nil || !s.forever {
			return total, err
		}
	}
}

func (s *testSource) Release() { s.released.Add(1) }

func startWriter(t *testing.T, opts Options, wopts WriterOptions) (*actor.Node, *Store, *Writer, *actor.Inbox) {
	t.Helper()
	n := startNode(t)
	s := openStore(t, t.TempDir(), opts)
	w, err := StartWriter(n, s, wopts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = w.Stop(waitFor) })
	return n, s, w, newInbox(t, n)
}

func TestWriterWritesAndNotifies(t *testing.T) {
	_, s, w, ib := startWriter(t, Options{BlockBytes: 1000}, WriterOptions{})
	srcs := map[string]*testSource{}
	for i, uid := range []string{"a", "b", "c"} {
		src := &testSource{data: pattern(uint64(i), 10_000)}
		srcs[uid] = src
		require.NoError(t, w.Submit(Write{UID: uid, Index: uint64(10 + i), Term: 2, Meta: []byte("m-" + uid), Data: src, Notify: ib.Ref()}))
	}
	got := map[string]Written{}
	for range srcs {
		m := recv[Written](t, ib)
		got[m.UID] = m
	}
	for i, uid := range []string{"a", "b", "c"} {
		m := got[uid]
		require.Equal(t, uint64(10+i), m.Index)
		require.Equal(t, uint64(2), m.Term)
		require.Equal(t, int64(10_000), m.DataSize)
		require.Greater(t, m.Size, m.DataSize)
		require.Equal(t, int32(1), srcs[uid].released.Load())
		info, _, err := s.Latest(uid)
		require.NoError(t, err)
		require.Equal(t, m.Info, info)
		meta, data, err := readAll(s, info)
		require.NoError(t, err)
		require.Equal(t, "m-"+uid, string(meta))
		require.Equal(t, pattern(uint64(i), 10_000), data)
	}
}

func TestWriterDiskFull(t *testing.T) {
	ffs := newFaultFS()
	_, s, w, ib := startWriter(t, Options{FS: ffs, BlockBytes: 1000}, WriterOptions{})
	ffs.set(func(f *faultFS) { f.writeBudget = 3000 })
	src := &testSource{data: pattern(1, 10_000)}
	require.NoError(t, w.Submit(Write{UID: "u", Index: 1, Term: 1, Data: src, Notify: ib.Ref()}))
	m := recv[WriteFailed](t, ib)
	require.Equal(t, "u", m.UID)
	require.Equal(t, uint64(1), m.Index)
	require.ErrorIs(t, m.Err, ErrIO)
	require.ErrorIs(t, m.Err, syscall.ENOSPC)
	require.Equal(t, int32(1), src.released.Load())
	require.Empty(t, dirNames(t, s, "u"), "nothing half-written stays")
	_, _, err := s.Latest("u")
	require.ErrorIs(t, err, ErrNotFound)

	// With space again, the next write succeeds.
	ffs.set(func(f *faultFS) { f.writeBudget = -1 })
	require.NoError(t, w.Submit(Write{UID: "u", Index: 2, Term: 1, Data: &testSource{data: pattern(2, 10)}, Notify: ib.Ref()}))
	require.Equal(t, uint64(2), recv[Written](t, ib).Index)
}

func TestWriterSourceFailures(t *testing.T) {
	_, s, w, ib := startWriter(t, Options{}, WriterOptions{})
	boom := errors.New("boom")
	failing := &testSource{fail: boom}
	require.NoError(t, w.Submit(Write{UID: "u", Index: 1, Term: 1, Data: failing, Notify: ib.Ref()}))
	m := recv[WriteFailed](t, ib)
	require.ErrorIs(t, m.Err, ErrSource)
	require.ErrorIs(t, m.Err, boom)
	require.Equal(t, int32(1), failing.released.Load())

	panicking := &testSource{panicMsg: "machine bug"}
	require.NoError(t, w.Submit(Write{UID: "u", Index: 2, Term: 1, Data: panicking, Notify: ib.Ref()}))
	m = recv[WriteFailed](t, ib)
	require.ErrorIs(t, m.Err, ErrSource)
	require.Contains(t, m.Err.Error(), "machine bug")
	require.Equal(t, int32(1), panicking.released.Load())
	require.Empty(t, dirNames(t, s, "u"))

	// The writer survived both.
	require.NoError(t, w.Submit(Write{UID: "u", Index: 3, Term: 1, Data: BytesSource("ok"), Notify: ib.Ref()}))
	require.Equal(t, uint64(3), recv[Written](t, ib).Index)
	require.NoError(t, w.Submit(Write{UID: "u", Index: 2, Term: 1, Data: BytesSource("old"), Notify: ib.Ref()}))
	require.ErrorIs(t, recv[WriteFailed](t, ib).Err, ErrStale)
}

func TestWriterInvalidRequests(t *testing.T) {
	n, _, w, ib := startWriter(t, Options{}, WriterOptions{})
	require.ErrorIs(t, w.Submit(Write{UID: "u", Index: 0, Data: BytesSource("x")}), ErrInvalid)
	require.ErrorIs(t, w.Submit(Write{UID: "u/x", Index: 1, Data: BytesSource("x")}), ErrInvalid)
	require.ErrorIs(t, w.Submit(Write{UID: "u", Index: 1}), ErrInvalid)
	// Sent directly, an invalid request is answered.
	src := &testSource{data: []byte("x")}
	require.NoError(t, n.Send(w.Ref(), Write{UID: "", Index: 1, Data: src, Notify: ib.Ref()}))
	require.ErrorIs(t, recv[WriteFailed](t, ib).Err, ErrInvalid)
	require.Equal(t, int32(1), src.released.Load())
}

func TestWriterSupersedesQueuedWrites(t *testing.T) {
	_, s, w, ib := startWriter(t, Options{}, WriterOptions{Concurrency: 1})
	hold := &testSource{data: []byte("a"), started: make(chan struct{}), proceed: make(chan struct{})}
	require.NoError(t, w.Submit(Write{UID: "a", Index: 1, Term: 1, Data: hold, Notify: ib.Ref()}))
	<-hold.started // the only slot is taken

	b1, b3, b2 := &testSource{data: []byte("1")}, &testSource{data: []byte("3")}, &testSource{data: []byte("2")}
	require.NoError(t, w.Submit(Write{UID: "b", Index: 1, Term: 1, Data: b1, Notify: ib.Ref()}))
	require.NoError(t, w.Submit(Write{UID: "b", Index: 3, Term: 1, Data: b3, Notify: ib.Ref()}))
	m := recv[WriteFailed](t, ib)
	require.Equal(t, uint64(1), m.Index)
	require.ErrorIs(t, m.Err, ErrSuperseded)
	require.NoError(t, w.Submit(Write{UID: "b", Index: 2, Term: 1, Data: b2, Notify: ib.Ref()}))
	m = recv[WriteFailed](t, ib)
	require.Equal(t, uint64(2), m.Index)
	require.ErrorIs(t, m.Err, ErrSuperseded)
	// A write at or below the one in progress for the UID is stale at once.
	a1 := &testSource{data: []byte("x")}
	require.NoError(t, w.Submit(Write{UID: "a", Index: 1, Term: 1, Data: a1, Notify: ib.Ref()}))
	require.ErrorIs(t, recv[WriteFailed](t, ib).Err, ErrStale)

	close(hold.proceed)
	require.Equal(t, "a", recv[Written](t, ib).UID)
	wb := recv[Written](t, ib)
	require.Equal(t, "b", wb.UID)
	require.Equal(t, uint64(3), wb.Index)
	for _, src := range []*testSource{hold, b1, b2, b3, a1} {
		require.Equal(t, int32(1), src.released.Load())
	}
	_, data, err := readAll(s, wb.Info)
	require.NoError(t, err)
	require.Equal(t, "3", string(data))
}

func TestWriterRunsUIDsConcurrentlyButEachUIDSerially(t *testing.T) {
	_, _, w, ib := startWriter(t, Options{}, WriterOptions{Concurrency: 2})
	a1 := &testSource{data: []byte("a1"), started: make(chan struct{}), proceed: make(chan struct{})}
	a2 := &testSource{data: []byte("a2"), started: make(chan struct{})}
	b1 := &testSource{data: []byte("b1"), started: make(chan struct{}), proceed: make(chan struct{})}
	require.NoError(t, w.Submit(Write{UID: "a", Index: 1, Term: 1, Data: a1, Notify: ib.Ref()}))
	require.NoError(t, w.Submit(Write{UID: "a", Index: 2, Term: 1, Data: a2, Notify: ib.Ref()}))
	require.NoError(t, w.Submit(Write{UID: "b", Index: 1, Term: 1, Data: b1, Notify: ib.Ref()}))
	// Both a1 and b1 are in WriteTo at the same time.
	<-a1.started
	<-b1.started
	close(b1.proceed)
	m := recv[Written](t, ib)
	require.Equal(t, "b", m.UID)
	select {
	case <-a2.started:
		t.Fatal("a second write of a UID started while its first was running")
	default:
	}
	close(a1.proceed)
	require.Equal(t, uint64(1), recv[Written](t, ib).Index)
	<-a2.started
	require.Equal(t, uint64(2), recv[Written](t, ib).Index)
}

func TestWriterStop(t *testing.T) {
	_, s, w, ib := startWriter(t, Options{BlockBytes: 4096}, WriterOptions{Concurrency: 1})
	endless := &testSource{data: pattern(1, 8192), forever: true, started: make(chan struct{})}
	queued := &testSource{data: []byte("q")}
	require.NoError(t, w.Submit(Write{UID: "a", Index: 1, Term: 1, Data: endless, Notify: ib.Ref()}))
	require.NoError(t, w.Submit(Write{UID: "b", Index: 1, Term: 1, Data: queued, Notify: ib.Ref()}))
	<-endless.started
	require.NoError(t, w.Stop(waitFor))
	failed := map[string]error{}
	for range 2 {
		m := recv[WriteFailed](t, ib)
		failed[m.UID] = m.Err
	}
	require.ErrorIs(t, failed["a"], ErrStopped)
	require.ErrorIs(t, failed["b"], ErrStopped)
	require.Equal(t, int32(1), endless.released.Load())
	require.Equal(t, int32(1), queued.released.Load())
	require.Empty(t, dirNames(t, s, "a"), "the aborted write's temp file is removed")
	require.ErrorIs(t, w.Submit(Write{UID: "a", Index: 2, Data: BytesSource("x")}), ErrStopped)
	require.NoError(t, w.Stop(waitFor))
}

func TestSourceFunc(t *testing.T) {
	_, s, w, ib := startWriter(t, Options{}, WriterOptions{})
	var freed atomic.Int32
	src := SourceFunc{
		Write: func(w io.Writer) (int64, error) {
			n, err := w.Write([]byte("view"))
			return int64(n), err
		},
		Free: func() { freed.Add(1) },
	}
	require.NoError(t, w.Submit(Write{UID: "f", Index: 1, Term: 1, Data: src, Notify: ib.Ref()}))
	m := recv[Written](t, ib)
	require.Equal(t, int32(1), freed.Load())
	_, data, err := readAll(s, m.Info)
	require.NoError(t, err)
	require.Equal(t, "view", string(data))
	SourceFunc{Write: src.Write}.Release() // no Free: nothing to call
}

// A writer restarted under its name (by a supervisor, after a crash) hears
// from the jobs of the one before it, since jobs report to the name: their
// requesters are answered once, and its own job of the same UID is not
// mistaken for theirs.
func TestWriterRestartedUnderItsName(t *testing.T) {
	n := startNode(t)
	s := openStore(t, t.TempDir(), Options{})
	ib, watcher := newInbox(t, n), newInbox(t, n)
	w1, err := StartWriter(n, s, WriterOptions{})
	require.NoError(t, err)
	a1 := &testSource{data: []byte("a1"), started: make(chan struct{}), proceed: make(chan struct{})}
	require.NoError(t, w1.Submit(Write{UID: "a", Index: 1, Term: 1, Data: a1, Notify: ib.Ref()}))
	<-a1.started
	watcher.Monitor(w1.Ref())
	require.NoError(t, n.Exit(w1.Ref(), actor.ErrorReason(errors.New("test: crash"))))
	require.Equal(t, actor.ReasonError, recv[actor.Down](t, watcher).Reason.Kind)

	w2, err := StartWriter(n, s, WriterOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = w2.Stop(waitFor) })
	a2 := &testSource{data: []byte("a2"), started: make(chan struct{}), proceed: make(chan struct{})}
	require.NoError(t, w2.Submit(Write{UID: "a", Index: 2, Term: 1, Data: a2, Notify: ib.Ref()}))
	<-a2.started

	// The old job sees its writer stopping and fails; its report reaches
	// the new writer, which answers it.
	close(a1.proceed)
	m := recv[WriteFailed](t, ib)
	require.Equal(t, uint64(1), m.Index)
	require.ErrorIs(t, m.Err, ErrStopped)

	// a2 still runs, so a3 of the same UID must wait for it.
	a3 := &testSource{data: []byte("a3"), started: make(chan struct{})}
	require.NoError(t, w2.Submit(Write{UID: "a", Index: 3, Term: 1, Data: a3, Notify: ib.Ref()}))
	select {
	case <-a3.started:
		t.Fatal("a second write of a UID started while its first was running")
	case <-time.After(200 * time.Millisecond):
	}
	close(a2.proceed)
	require.Equal(t, uint64(2), recv[Written](t, ib).Index)
	require.Equal(t, uint64(3), recv[Written](t, ib).Index)
}
