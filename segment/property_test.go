package segment

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/wal"
	"github.com/rago-raft/rago/wal/walfs"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// stack is a node's storage as the system would start it, except that the
// test plays the segment writer (an inbox receives the closed files and
// the test decides when to flush them), so flushes interleave with writes
// and restarts wherever the property test puts them.
type stack struct {
	t       *rapid.T
	node    *actor.Node
	gen     int
	walFS   *walfs.Mem
	segFS   *vfs.MemFS
	shared  *vfs.MemFS // with linking: one file system for the WAL and the store
	store   *Store
	w       *wal.WAL
	segs    *actor.Inbox
	server  *actor.Inbox
	writers map[string]*wal.Writer
	closed  []*wal.ClosedFile
}

var uids = []string{"u0", "u1", "u2", "u3-long_UID"}

func (s *stack) start() {
	s.gen++
	var err error
	cfg := wal.DefaultConfig("/wal")
	if s.shared != nil {
		// Any run that is nine tenths of its file is linked.
		s.store, err = Open("/seg", Options{FS: s.shared, LinkMinBytes: 1})
		cfg.FS = walfs.FromVFS(s.shared)
	} else {
		s.store, err = Open("/seg", Options{FS: s.segFS})
		cfg.FS = s.walFS
	}
	require.NoError(s.t, err)
	cfg.MaxFileBytes = 2 << 10
	cfg.MaxInFlightEntries = 1 << 20
	cfg.MaxInFlightBytes = 1 << 30
	cfg.MaxClosedFiles = 1 << 20 // the test flushes when rapid says so
	s.w, err = wal.Start(s.node, cfg, wal.StartOptions{Name: fmt.Sprintf("wal-%p-%d", s, s.gen), SegmentWriter: s.segs.Ref()})
	require.NoError(s.t, err)
	s.writers = map[string]*wal.Writer{}
	for _, uid := range uids {
		s.writers[uid], err = s.w.Register(uid, s.server.Ref())
		require.NoError(s.t, err)
	}
}

// crash stops the WAL cleanly (everything acknowledged is synced anyway)
// and restarts on what a power cut would leave of both file systems.
func (s *stack) crash() {
	require.NoError(s.t, s.w.Stop(10*time.Second))
	s.drainClosed()
	s.closed = nil // the restarted WAL hands every file over again
	s.countLinks()
	if s.shared != nil {
		crashed := s.shared.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(uint64(s.gen), 2))})
		require.NoError(s.t, s.store.Close())
		s.shared = crashed
		s.start()
		return
	}
	s.walFS = s.walFS.Crash(rand.New(rand.NewPCG(uint64(s.gen), 1)))
	crashed := s.segFS.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(uint64(s.gen), 2))})
	require.NoError(s.t, s.store.Close())
	s.segFS = crashed
	s.start()
}

// linkCounts adds up, over every run of a property test, how often its
// stores linked and collected WAL files: a test meant to cover linking
// fails if it never happened.
type linkCounts struct{ linked, collected int64 }

var propertyLinks linkCounts

func (s *stack) countLinks() {
	st := s.store.Stats()
	propertyLinks.linked += st.Linked
	propertyLinks.collected += st.LinkedCollected
}

func (s *stack) drainClosed() {
	for {
		select {
		case m := <-s.segs.C():
			s.closed = append(s.closed, m.(*wal.ClosedFile))
		default:
			return
		}
	}
}

// flushOne plays the segment writer for the oldest closed file.
func (s *stack) flushOne() {
	s.drainClosed()
	if len(s.closed) == 0 {
		return
	}
	cf := s.closed[0]
	s.closed = s.closed[1:]
	_, err := s.store.FlushFile(cf)
	require.NoError(s.t, err)
	for _, t := range cf.Tables {
		t.Log.DropFile(cf.Seq)
	}
	require.NoError(s.t, cf.Remove())
}

func (s *stack) log(uid string) *Log {
	return NewLog(uid, s.store, func() *wal.MemLog { return s.w.Mem(uid) })
}

// TestStorageMatchesModel: random interleavings of writes from many UIDs,
// overwrites, rollovers, segment flushes, snapshot truncations and crashes
// behave exactly like a map of per-UID slices.
func TestStorageMatchesModel(t *testing.T) {
	// Long action sequences find interleavings short ones miss; an
	// explicit -rapid.steps still wins.
	if f := flag.Lookup("rapid.steps"); f != nil && f.Value.String() == f.DefValue {
		require.NoError(t, flag.Set("rapid.steps", "100"))
	}
	t.Run("copied", func(t *testing.T) { storageMatchesModel(t, false) })
	t.Run("linked", func(t *testing.T) {
		propertyLinks = linkCounts{}
		storageMatchesModel(t, true)
		t.Logf("linked %d WAL files, collected %d", propertyLinks.linked, propertyLinks.collected)
		require.Positive(t, propertyLinks.linked, "no WAL file was linked")
		require.Positive(t, propertyLinks.collected, "no linked WAL file was collected")
	})
}

// storageMatchesModel runs the property; with link, the WAL and the store
// share a file system and one UID writes most, so that closed files are
// often linked rather than copied.
func storageMatchesModel(t *testing.T, link bool) {
	node, err := actor.StartNode(actor.Config{Address: "127.0.0.1:0"})
	require.NoError(t, err)
	defer node.Stop()
	writers := uids
	if link {
		writers = []string{uids[0], uids[0], uids[0], uids[0], uids[0], uids[0], uids[1], uids[2], uids[3]}
	}
	rapid.Check(t, func(rt *rapid.T) {
		segs, err := node.NewInbox()
		require.NoError(rt, err)
		defer segs.Close()
		server, err := node.NewInbox()
		require.NoError(rt, err)
		defer server.Close()
		s := &stack{t: rt, node: node, walFS: walfs.NewMem(), segFS: vfs.NewCrashableMem(), segs: segs, server: server}
		if link {
			// As the system does: the directories exist and are durable
			// before the stores start.
			s.shared = vfs.NewCrashableMem()
			for _, dir := range []string{"/wal", "/seg"} {
				require.NoError(rt, s.shared.MkdirAll(dir, 0o755))
			}
			d, err := s.shared.OpenDir("/")
			require.NoError(rt, err)
			require.NoError(rt, d.Sync())
			require.NoError(rt, d.Close())
		}
		s.start()
		defer func() {
			_ = s.w.Stop(10 * time.Second)
			s.countLinks()
			_ = s.store.Close()
		}()
		model := map[string][]wal.Entry{}
		floor := map[string]uint64{}

		rt.Repeat(map[string]func(*rapid.T){
			"write": func(rt *rapid.T) {
				uid := rapid.SampledFrom(writers).Draw(rt, "uid")
				last := uint64(len(model[uid]))
				at := last + 1
				if last > floor[uid] && rapid.Bool().Draw(rt, "overwrite") {
					at = rapid.Uint64Range(floor[uid]+1, last).Draw(rt, "at")
				}
				n := rapid.IntRange(1, 4).Draw(rt, "n")
				size := rapid.IntRange(0, 300).Draw(rt, "size")
				term := rapid.Uint64Range(1, 5).Draw(rt, "term")
				es := make([]wal.Entry, n)
				for i := range es {
					p := make([]byte, size)
					for j := range p {
						p[j] = byte(int(at) + i + j)
					}
					es[i] = wal.Entry{Index: at + uint64(i), Term: term, Payload: p}
				}
				require.NoError(rt, s.writers[uid].Write(es...))
				m, err := server.ReceiveTimeout(10 * time.Second)
				require.NoError(rt, err)
				require.Equal(rt, wal.Written{UID: uid, Term: term, From: at, To: at + uint64(n) - 1}, m)
				model[uid] = append(model[uid][:at-1], es...)
			},
			"rollover": func(rt *rapid.T) { require.NoError(rt, s.w.Rollover()) },
			"flush":    func(rt *rapid.T) { s.flushOne() },
			"truncate": func(rt *rapid.T) {
				uid := rapid.SampledFrom(uids).Draw(rt, "uid")
				last := uint64(len(model[uid]))
				if last <= floor[uid] {
					rt.Skip("nothing to truncate")
				}
				to := rapid.Uint64Range(floor[uid]+1, last).Draw(rt, "to")
				require.NoError(rt, s.store.Truncate(uid, to))
				require.NoError(rt, s.store.Sync())
				floor[uid] = to
			},
			"crash": func(rt *rapid.T) { s.crash() },
			"": func(rt *rapid.T) {
				for _, uid := range uids {
					checkLog(rt, s.log(uid), model[uid], floor[uid])
				}
			},
		})
	})
}

func checkLog(t *rapid.T, l *Log, want []wal.Entry, floor uint64) {
	first, last, term, ok, err := l.Bounds()
	require.NoError(t, err)
	if uint64(len(want)) <= floor {
		require.False(t, ok && last > floor, "empty log reports %d..%d", first, last)
		return
	}
	require.True(t, ok)
	require.Equal(t, floor+1, first, "first index")
	require.Equal(t, uint64(len(want)), last, "last index")
	require.Equal(t, want[last-1].Term, term, "last term")
	got, err := l.Range(first, last, 0)
	require.NoError(t, err)
	require.Len(t, got, int(last-first+1))
	for i, e := range got {
		w := want[first-1+uint64(i)]
		require.Equal(t, w.Index, e.Index)
		require.Equal(t, w.Term, e.Term, "term of %d", w.Index)
		require.Equal(t, string(w.Payload), string(e.Payload), "payload of %d", w.Index)
	}
	// AppendRange reads the same, after what out already holds.
	pre := []wal.Entry{{Index: 1 << 40}}
	appended, err := l.AppendRange(pre, first, last, 0)
	require.NoError(t, err)
	require.Equal(t, pre[0], appended[0])
	require.Equal(t, got, appended[1:])
	e, err := l.Entry(last)
	require.NoError(t, err)
	require.Equal(t, want[last-1].Term, e.Term)
	_, err = l.Entry(last + 1)
	require.ErrorIs(t, err, ErrNotFound)
}
