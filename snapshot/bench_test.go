package snapshot

import (
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/actor"
)

// BenchmarkInstall measures a 100 MB machine state end to end between two
// actor nodes over loopback: written on node a's store by the snapshot
// writer process (blocks, checksums, fsync, rename), sent in chunks over
// the actor transport, verified, fsynced and renamed into place by a
// receiver on node b, then restored there (Latest verifies every byte,
// then a Reader streams the data). Each phase reports its MB/s (MB =
// 10^6 bytes of machine data). RAGO_BENCH_DIR puts the files elsewhere
// than the temp dir.
func BenchmarkInstall(b *testing.B) {
	const size = 100_000_000
	p := newNodePair(b)
	if dir := os.Getenv("RAGO_BENCH_DIR"); dir != "" {
		for i, s := range []**Store{&p.srcStore, &p.dstStore} {
			d, err := os.MkdirTemp(dir, fmt.Sprintf("snapbench%d-", i))
			require.NoError(b, err)
			b.Cleanup(func() { _ = os.RemoveAll(d) })
			*s = openStore(b, d, Options{})
		}
	}
	cfg := SenderConfig{}
	var write, install, restore time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		uid := fmt.Sprintf("bench%d", i)
		t0 := time.Now()
		info, _ := p.writeOnA(b, uid, size)
		t1 := time.Now()
		rref := p.spawnReceiver(b, uid, 0)
		sref := p.spawnSender(b, info, cfg, 100*time.Millisecond, nil, faults{})
		got, _ := p.awaitInstalled(b, 5*time.Minute)
		t2 := time.Now()
		latest, _, err := p.dstStore.Latest(uid)
		require.NoError(b, err)
		r, err := p.dstStore.Open(latest)
		require.NoError(b, err)
		n, err := io.Copy(io.Discard, r)
		require.NoError(b, err)
		require.NoError(b, r.Close())
		t3 := time.Now()
		require.Equal(b, info, got)
		require.Equal(b, int64(size), n)
		write += t1.Sub(t0)
		install += t2.Sub(t1)
		restore += t3.Sub(t2)

		b.StopTimer()
		stopProc(b, p.a, sref)
		stopProc(b, p.b, rref)
		require.NoError(b, p.srcStore.Delete(uid))
		require.NoError(b, p.dstStore.Delete(uid))
		b.StartTimer()
	}
	mbps := func(d time.Duration) float64 { return float64(size) * float64(b.N) / 1e6 / d.Seconds() }
	b.ReportMetric(mbps(write), "write_MB/s")
	b.ReportMetric(mbps(install), "transfer+install_MB/s")
	b.ReportMetric(mbps(restore), "restore_MB/s")
	b.ReportMetric(install.Seconds()/float64(b.N), "install_s")
}

func stopProc(t testing.TB, n *actor.Node, ref actor.Ref) {
	t.Helper()
	_ = n.Exit(ref, actor.Normal)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	require.NoError(t, n.Wait(ctx, ref))
}
