package main

import (
	"fmt"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestWipedNodeLosesNoAcknowledgedWrite is the amnesia scenario across
// processes: n3 lags (frozen), n1 and n2 acknowledge writes, both go down,
// n2's data directory is wiped and n2 starts again with its usual flags,
// n3 resumes. The wiped n2 must not help n3 lead without the writes: the
// cluster binds each member to its replica's incarnation and ignores n2's
// new one. When n1 returns, every acknowledged write is there, and n2
// rejoins by itself as a new incarnation and catches up.
func TestWipedNodeLosesNoAcknowledgedWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	c := startCluster(t, 3)
	ctx := ctxFor(t)
	// n3 is the member frozen below while the others take writes, n2 the
	// one wiped, n1 the one that comes back last. n3 must be a follower:
	// frozen while it leads, the writes would wait for the failure
	// detector to depose it, longer than a request may take (a 504, not
	// the case under test). So the roles go to the nodes by who leads.
	var leader string
	require.Eventually(t, func() bool {
		st, err := c.client(c.nodes[0]).Status(ctx)
		leader = st.Leader
		return err == nil && leader != ""
	}, waitFor, 50*time.Millisecond, "a leader")
	roles := slices.Clone(c.nodes)
	if i := slices.IndexFunc(roles, func(p *proc) bool { return p.id == leader }); i == 2 {
		roles[0], roles[2] = roles[2], roles[0]
	}
	n1, n2, n3 := roles[0], roles[1], roles[2]
	// n3 is frozen only once its log binds every member to its replica
	// (the leader binds each member once it hears from it): a member that
	// never learnt a binding cannot tell a wiped replica from the old one.
	require.Eventually(t, func() bool {
		st, err := c.client(n3).Status(ctx)
		if err != nil || len(st.Members) != 3 {
			return false
		}
		for _, m := range st.Members {
			if !m.Bound {
				return false
			}
		}
		return true
	}, waitFor, 50*time.Millisecond, "n3 holds every member's binding")

	require.NoError(t, n3.cmd.Process.Signal(syscall.SIGSTOP))
	acked := map[string]string{}
	for i := range 50 {
		k, v := fmt.Sprintf("k%02d", i), fmt.Sprint("v", i)
		_, err := c.client(n1, n2).Put(ctx, k, []byte(v))
		require.NoError(t, err, "write %s", k)
		acked[k] = v
	}
	c.kill(n1)
	c.kill(n2)
	require.NoError(t, os.RemoveAll(n2.data))
	c.start(n2)
	require.NoError(t, n3.cmd.Process.Signal(syscall.SIGCONT))

	// n2 and n3 make a majority of the voters, but n2's votes do not
	// count: neither leads. (Each is asked for its own role: n3's view of
	// the cluster, probed before it froze, may name a dead leader.)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		for _, p := range []*proc{n2, n3} {
			st, err := c.client(p).Status(ctx)
			require.NoError(t, err)
			require.NotEqual(t, "leader", st.Role, "%s was elected with the wiped node's vote", p.id)
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.Eventually(t, func() bool {
		st, err := c.client(n3).Status(ctx)
		return err == nil && slices.Contains(st.Strangers, n2.id)
	}, waitFor, 50*time.Millisecond, "n3 names the wiped n2 a stranger")

	c.start(n1)
	c.waitHealthy()
	for k, v := range acked {
		r, err := c.client(n1, n2, n3).Get(ctx, k, "linearizable")
		require.NoError(t, err, k)
		require.Equal(t, v, r.Value, k)
	}
	require.Eventually(t, func() bool {
		r, err := c.client(n2).Get(ctx, "k49", "local")
		return err == nil && r.Value == "v49"
	}, waitFor, 50*time.Millisecond, "n2 caught up as a new incarnation")
	require.Contains(t, n2.tail(1<<20), "rejoined the cluster as a new incarnation")
}
