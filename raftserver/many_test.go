package raftserver

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestThousandClusters runs 1000 clusters of 3 members on 3 nodes in one
// process: they form, take a command each, and come back after a restart
// of every node. RAGO_MANY_CLUSTERS changes the count.
func TestThousandClusters(t *testing.T) {
	count := 1000
	if v := os.Getenv("RAGO_MANY_CLUSTERS"); v != "" {
		count, _ = strconv.Atoi(v)
	} else if testing.Short() {
		count = 100
	}
	c := &cluster{t: t}
	for range 3 {
		dir := t.TempDir()
		cfg := testSystemConfig(t, dir)
		cfg.Address = freeAddress(t)
		s, err := StartSystem(cfg)
		require.NoError(t, err)
		c.systems = append(c.systems, s)
		c.dirs = append(c.dirs, dir)
		c.members = append(c.members, ServerID{Node: s.Name()})
	}
	t.Cleanup(func() {
		for _, s := range c.systems {
			if s != nil {
				_ = s.Stop()
			}
		}
	})
	membersOf := func(i int) []ServerID {
		var ms []ServerID
		for _, n := range c.members {
			ms = append(ms, ServerID{Name: fmt.Sprint("c", i), Node: n.Node})
		}
		return ms
	}
	parallel := func(f func(i int) error) {
		var wg sync.WaitGroup
		errs := make(chan error, count)
		work := make(chan int)
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range work {
					if err := f(i); err != nil {
						errs <- fmt.Errorf("cluster %d: %w", i, err)
					}
				}
			}()
		}
		for i := range count {
			work <- i
		}
		close(work)
		wg.Wait()
		close(errs)
		var failed []error
		for err := range errs {
			failed = append(failed, err)
		}
		for _, err := range failed[:min(len(failed), 6)] {
			t.Error(err)
		}
		require.Empty(t, failed)
	}
	start := time.Now()
	parallel(func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _, err := c.systems[i%3].StartCluster(ctx, fmt.Sprint("c", i), MachineSpec{Kind: "kv"}, membersOf(i))
		return err
	})
	t.Logf("%d clusters formed in %v", count, time.Since(start))
	start = time.Now()
	parallel(func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _, err := c.systems[i%3].ProcessCommand(ctx, membersOf(i)[i%3], []byte(fmt.Sprintf("set key %d", i)))
		return err
	})
	t.Logf("%d commands in %v", count, time.Since(start))

	for i, s := range c.systems {
		require.NoError(t, s.Stop())
		c.systems[i] = nil
	}
	start = time.Now()
	links := &linkLog{}
	for i := range c.systems {
		cfg := testSystemConfig(t, c.dirs[i])
		cfg.Logger = slog.New(links.handler(fmt.Sprint("system ", i)))
		cfg.Address = c.members[i].Node
		started := time.Now()
		s, err := StartSystem(cfg)
		require.NoError(t, err)
		c.systems[i] = s
		servers, err := s.LocalServers(t.Context())
		require.NoError(t, err)
		require.Len(t, servers, count)
		t.Logf("system %d restarted its %d servers in %v", i, count, time.Since(started))
	}
	start = time.Now()
	var summaryOnce sync.Once
	var slowest struct {
		sync.Mutex
		d time.Duration
	}
	parallel(func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		asked := time.Now()
		got, _, err := c.systems[i%3].ConsistentQuery(ctx, membersOf(i)[(i+1)%3], []byte("get key"))
		slowest.Lock()
		slowest.d = max(slowest.d, time.Since(asked))
		slowest.Unlock()
		if err != nil {
			// When it was asked tells a slow recovery (asked late, after
			// other queries) from a lost answer (asked early, healthy since).
			err = fmt.Errorf("asked %v after the restart, failed after %v: %w", asked.Sub(start).Round(time.Millisecond), time.Since(asked).Round(time.Millisecond), err)
			// What the process's goroutines were doing, once per run: a
			// node that stops reading or handling shows here.
			var goroutines string
			summaryOnce.Do(func() { goroutines = goroutineSummary(20, 10) })
			var stats strings.Builder
			for k, s := range c.systems {
				fmt.Fprintf(&stats, "  system %d: %+v\n", k, s.Node().Stats())
			}
			return fmt.Errorf("%w\n%s%s%s%s", err, c.describe(membersOf(i)), &stats, links, goroutines)
		}
		if string(got) != fmt.Sprint(i) {
			return fmt.Errorf("key is %q, want %d", got, i)
		}
		return nil
	})
	t.Logf("%d clusters answered after the restart in %v, the slowest in %v", count, time.Since(start), slowest.d)
	// What the failure detectors did meanwhile: suspicions of live nodes
	// start elections in every cluster they lead, and checks excused
	// because a node's bytes waited unread here are suspicions avoided.
	var excused uint64
	for _, s := range c.systems {
		for _, st := range s.FailureDetector().Status() {
			excused += st.Excused
		}
	}
	t.Logf("after the restart: %d suspicions, %d checks excused by bytes waiting to be read", links.count("node suspected"), excused)
}

// goroutineSummary returns the groups of goroutines with identical stacks,
// the largest first: at most groups of them, frames lines of each.
func goroutineSummary(groups, frames int) string {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
	var b strings.Builder
	b.WriteString("  goroutines:\n")
	for i, g := range strings.Split(buf.String(), "\n\n") {
		if i > groups {
			break
		}
		lines := strings.Split(strings.TrimSpace(g), "\n")
		for _, l := range lines[:min(len(lines), frames+1)] {
			b.WriteString("    " + l + "\n")
		}
	}
	return b.String()
}

// count returns how many lines have msg as their message.
func (l *linkLog) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, ": "+msg) {
			n++
		}
	}
	return n
}

// describe reports each member's status, asked through its own node, for
// a failure message.
func (c *cluster) describe(members []ServerID) string {
	var b strings.Builder
	for i, m := range members {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := c.systems[i].Overview(ctx, m)
		cancel()
		if err != nil {
			fmt.Fprintf(&b, "  %s: %v\n", m, err)
			continue
		}
		fmt.Fprintf(&b, "  %s: role %s term %d leader %s commit %d applied %d last %d/%d stable %d voters %v\n",
			m, st.Role, st.Term, st.Leader, st.Commit, st.LastApplied, st.LastIndex, st.LastTerm, st.StableIndex, st.Voters)
		for _, p := range st.Progress {
			fmt.Fprintf(&b, "    %s: match %d next %d %s paused %v commit acked %d\n", p.ID, p.Match, p.Next, p.State, p.Paused, p.CommitAcked)
		}
	}
	return b.String()
}

// linkLog keeps what the nodes log about their peers (connections lost,
// peers restarted, nodes suspected), for a failure message.
type linkLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *linkLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return "  node events:\n    " + strings.Join(l.lines, "\n    ") + "\n"
}

func (l *linkLog) handler(who string) slog.Handler {
	return &linkLogHandler{log: l, who: who}
}

type linkLogHandler struct {
	log *linkLog
	who string
}

func (h *linkLogHandler) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelInfo }

func (h *linkLogHandler) Handle(_ context.Context, r slog.Record) error {
	if !strings.HasPrefix(r.Message, "peer") && !strings.HasPrefix(r.Message, "node") {
		return nil
	}
	line := fmt.Sprintf("%s %s: %s", r.Time.Format("15:04:05.000"), h.who, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		line += " " + a.String()
		return true
	})
	h.log.mu.Lock()
	h.log.lines = append(h.log.lines, line)
	h.log.mu.Unlock()
	return nil
}

func (h *linkLogHandler) WithAttrs([]slog.Attr) slog.Handler { return h }

func (h *linkLogHandler) WithGroup(string) slog.Handler { return h }
