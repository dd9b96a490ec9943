package segment

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/wal"
	"github.com/stretchr/testify/require"
)

// The crash test runs the storage stack in a child process (this test
// binary, re-executed), SIGKILLs it at random moments and checks, after
// each kill, that every entry the child had seen acknowledged (Written) is
// present and intact. RAGO_CRASH_ROUNDS sets the number of kills (default
// 3; CI soaks use more).
const (
	crashDirEnv    = "RAGO_CRASH_CHILD_DIR"
	crashRoundsEnv = "RAGO_CRASH_ROUNDS"
	crashUIDs      = 4
)

func crashUID(i int) string { return fmt.Sprintf("crash-uid-%d", i) }

// crashPayload is the content of uid's entry (index, term): the parent
// recomputes it to check the entry is intact. Sizes vary so batches,
// files and torn tails fall at varied offsets.
func crashPayload(uid string, index, term uint64) []byte {
	unit := fmt.Sprintf("%s:%d:%d;", uid, index, term)
	size := 8 + int(index*7919%1500)
	return []byte(strings.Repeat(unit, size/len(unit)+1)[:size])
}

// openStack starts the storage of a node on dir, as the system would:
// segment store, segment writer, then the WAL.
func openStack(node *actor.Node, dir, name string) (*Store, *Writer, *wal.WAL, error) {
	// Files of 256 KiB, mostly of crash-uid-0: many are linked.
	store, err := Open(filepath.Join(dir, "segments"), Options{LinkMinBytes: 64 << 10})
	if err != nil {
		return nil, nil, nil, err
	}
	sw, err := StartWriter(node, store, WriterOptions{Name: name + "-segments"})
	if err != nil {
		return nil, nil, nil, errors.Join(err, store.Close())
	}
	cfg := wal.DefaultConfig(filepath.Join(dir, "wal"))
	cfg.MaxFileBytes = 256 << 10 // roll often so segment flushes race the kill too
	cfg.MaxInFlightEntries = 256
	w, err := wal.Start(node, cfg, wal.StartOptions{Name: name + "-wal", SegmentWriter: sw.Ref()})
	if err != nil {
		return nil, nil, nil, errors.Join(err, sw.Stop(10*time.Second), store.Close())
	}
	return store, sw, w, nil
}

// TestCrashChild is the child's body; it only runs when re-executed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("runs only as the child of TestCrashRecoveryWithRealProcesses")
	}
	node, err := actor.StartNode(actor.Config{Address: "127.0.0.1:0"})
	require.NoError(t, err)
	store, _, w, err := openStack(node, dir, "child")
	require.NoError(t, err)
	ib, err := node.NewInbox()
	require.NoError(t, err)
	type state struct {
		w          *wal.Writer
		next, term uint64
	}
	states := make([]*state, crashUIDs)
	for i := range states {
		uid := crashUID(i)
		wr, err := w.Register(uid, ib.Ref())
		require.NoError(t, err)
		_, last, term, _, err := NewLog(uid, store, func() *wal.MemLog { return w.Mem(uid) }).Bounds()
		require.NoError(t, err)
		states[i] = &state{w: wr, next: last + 1, term: max(term, 1)}
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	handle := func(m actor.Message) {
		switch m := m.(type) {
		case wal.Written:
			// One write(2) per line: a kill never leaves half a line.
			fmt.Fprintf(os.Stdout, "ACK %s %d %d %d\n", m.UID, m.From, m.To, m.Term)
		case Flushed:
		default:
			t.Fatalf("unexpected notification %#v", m)
		}
	}
	for {
		progressed := false
		for i, s := range states {
			uid := crashUID(i)
			if i > 0 && rng.IntN(50) != 0 {
				continue // crash-uid-0 writes most, so that its runs fill files
			}
			n, _ := s.w.InFlight()
			if n == 0 && s.next > 4 && rng.IntN(100) == 0 {
				// A follower-style overwrite of the last three entries,
				// announced first: it may become durable unacknowledged.
				s.next -= 3
				s.term++
				fmt.Fprintf(os.Stdout, "OVW %s %d %d\n", uid, s.next, s.term)
			}
			k := 1 + rng.IntN(8)
			es := make([]wal.Entry, k)
			for j := range es {
				idx := s.next + uint64(j)
				es[j] = wal.Entry{Index: idx, Term: s.term, Payload: crashPayload(uid, idx, s.term)}
			}
			if err := s.w.Write(es...); err == nil {
				s.next += uint64(k)
				progressed = true
			} else {
				require.ErrorIs(t, err, wal.ErrBackpressure)
			}
		}
		for {
			select {
			case m := <-ib.C():
				handle(m)
				continue
			default:
			}
			break
		}
		if !progressed {
			m, err := ib.ReceiveTimeout(10 * time.Second)
			require.NoError(t, err)
			handle(m)
		}
	}
}

// crashModel is what the parent learned from the child's output.
type crashModel struct {
	mu      sync.Mutex
	acked   map[string]map[uint64]uint64 // uid -> index -> term
	pending map[string][2]uint64         // uid -> announced overwrite {from, term}
	acks    int
}

func (m *crashModel) line(t *testing.T, line string) {
	f := strings.Fields(line)
	if len(f) == 0 || (f[0] != "ACK" && f[0] != "OVW") {
		return // test framework chatter
	}
	nums := make([]uint64, len(f)-2)
	for i := range nums {
		v, err := strconv.ParseUint(f[i+2], 10, 64)
		require.NoError(t, err, line)
		nums[i] = v
	}
	uid := f[1]
	m.mu.Lock()
	defer m.mu.Unlock()
	if f[0] == "OVW" {
		m.pending[uid] = [2]uint64{nums[0], nums[1]}
		return
	}
	from, to, term := nums[0], nums[1], nums[2]
	log := m.acked[uid]
	if log == nil {
		log = map[uint64]uint64{}
		m.acked[uid] = log
	}
	for i := range log {
		if i > to {
			delete(log, i)
		}
	}
	for i := from; i <= to; i++ {
		log[i] = term
	}
	if p, ok := m.pending[uid]; ok && from <= p[0] && term == p[1] {
		delete(m.pending, uid)
	}
	m.acks++
}

func TestCrashRecoveryWithRealProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	rounds := 3
	if v := os.Getenv(crashRoundsEnv); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err)
		rounds = n
	}
	dir := t.TempDir()
	node, err := actor.StartNode(actor.Config{Address: "127.0.0.1:0"})
	require.NoError(t, err)
	defer node.Stop()
	model := &crashModel{acked: map[string]map[uint64]uint64{}, pending: map[string][2]uint64{}}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for round := 0; round < rounds; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1", "-test.timeout=10m")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		done := make(chan struct{})
		go func() {
			defer close(done)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				model.line(t, sc.Text())
			}
		}()
		// Let the child get going, then kill it at a random moment.
		start := model.count()
		deadline := time.Now().Add(30 * time.Second)
		for model.count() < start+50 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		<-done
		err = cmd.Wait()
		var exit *exec.ExitError
		require.True(t, errors.As(err, &exit), "child must die by the kill, got %v", err)
		require.Greater(t, model.count(), start, "round %d: the child acknowledged nothing", round)
		verifyCrashDir(t, node, dir, round, model)
	}
	names, err := os.ReadDir(filepath.Join(dir, "segments"))
	require.NoError(t, err)
	linked := 0
	for _, n := range names {
		if strings.HasPrefix(n.Name(), linkPrefix) {
			linked++
		}
	}
	require.Positive(t, linked, "no WAL file was linked: the test no longer covers linking")
	t.Logf("%d linked WAL files in the store", linked)
}

func (m *crashModel) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.acks
}

// verifyCrashDir recovers the directory in this process and checks every
// acknowledged entry.
func verifyCrashDir(t *testing.T, node *actor.Node, dir string, round int, m *crashModel) {
	store, sw, w, err := openStack(node, dir, fmt.Sprintf("verify%d", round))
	require.NoError(t, err, "round %d: recovery failed", round)
	m.mu.Lock()
	defer m.mu.Unlock()
	checked := 0
	for uid, acked := range m.acked {
		log := NewLog(uid, store, func() *wal.MemLog { return w.Mem(uid) })
		pending, hasPending := m.pending[uid]
		for idx, term := range acked {
			e, err := log.Entry(idx)
			require.NoError(t, err, "round %d: acknowledged %s index %d (term %d) lost", round, uid, idx, term)
			if e.Term != term && hasPending && idx >= pending[0] && e.Term == pending[1] {
				// The announced overwrite became durable without its
				// acknowledgement; from now on it is what the log holds.
				term = e.Term
				acked[idx] = term
			}
			require.Equal(t, term, e.Term, "round %d: %s index %d", round, uid, idx)
			require.Equal(t, string(crashPayload(uid, idx, term)), string(e.Payload), "round %d: %s index %d corrupt", round, uid, idx)
			checked++
		}
		// Whatever happened to an unacknowledged overwrite is settled now:
		// the next child continues from the recovered log.
		delete(m.pending, uid)
	}
	require.NoError(t, w.Stop(10*time.Second))
	require.NoError(t, sw.Stop(time.Minute))
	require.NoError(t, store.Close())
	t.Logf("round %d: %d acknowledged entries intact", round, checked)
}
