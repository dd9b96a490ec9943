package snapshot

import (
	"context"
	"hash/crc64"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/actor"
)

// The processes below stand in for the leader's and the follower's
// servers: they carry Chunks and ChunkAcks between two actor nodes and
// drive a Sender and a Receiver the way a server would.

type tickMsg struct{}

// senderDone reports how a sendProc's transfer ended.
type senderDone struct {
	done bool
	err  error
}

// sendProc drives a Sender; it may drop, duplicate and swap chunks.
type sendProc struct {
	snd    *Sender
	to     actor.Ref
	report actor.Ref
	tick   time.Duration
	rng    *rand.Rand // nil: no faults
	f      faults
	held   *Chunk // a chunk held back to swap with the next one
	ended  bool
}

func (p *sendProc) Receive(ctx *actor.Context, msg actor.Message) {
	var cs []Chunk
	switch m := msg.(type) {
	case actor.Started:
		cs, _ = p.snd.Start(time.Now())
		ctx.SendAfter(p.tick, tickMsg{})
	case ChunkAck:
		cs, _ = p.snd.HandleAck(m, time.Now())
	case tickMsg:
		if p.held != nil {
			_ = ctx.Send(p.to, *p.held)
			p.held = nil
		}
		cs, _ = p.snd.Tick(time.Now())
		if !p.snd.Finished() {
			ctx.SendAfter(p.tick, tickMsg{})
		}
	case actor.Terminating:
		_ = p.snd.Close()
		return
	}
	var sendErr error
	for _, c := range cs {
		if err := p.send(ctx, c); err != nil {
			sendErr = err
		}
	}
	if (p.snd.Finished() || sendErr != nil) && !p.ended {
		p.ended = true
		err := p.snd.Err()
		if sendErr != nil {
			err = sendErr
		}
		_ = ctx.Send(p.report, senderDone{done: p.snd.Done(), err: err})
	}
}

func (p *sendProc) send(ctx *actor.Context, c Chunk) error {
	if p.rng != nil {
		switch {
		case p.rng.Float64() < p.f.drop:
			return nil
		case p.rng.Float64() < p.f.dup:
			_ = ctx.Send(p.to, c)
		case p.held == nil && p.rng.Float64() < p.f.reorder:
			p.held = &c
			return nil
		}
	}
	err := ctx.Send(p.to, c)
	if p.held != nil {
		_ = ctx.Send(p.to, *p.held)
		p.held = nil
	}
	return err
}

// received reports a Receiver outcome worth knowing: the first ack of
// the process, an install, a failure, or that progressAt bytes arrived.
type received struct {
	first    bool
	progress bool
	res      Received
}

// recvProc drives a Receiver.
type recvProc struct {
	rcv        *Receiver
	ackTo      actor.Ref
	report     actor.Ref
	progressAt int64 // report once when this many bytes are held (0: never)
	acked      bool
	progressed bool
}

func (p *recvProc) Receive(ctx *actor.Context, msg actor.Message) {
	switch m := msg.(type) {
	case Chunk:
		res := p.rcv.Receive(m, time.Now())
		if res.Reply {
			_ = ctx.Send(p.ackTo, res.Ack)
			if !p.acked {
				p.acked = true
				_ = ctx.Send(p.report, received{first: true, res: res})
			}
		}
		if res.Installed || res.Err != nil {
			_ = ctx.Send(p.report, received{res: res})
		}
		if _, got, ok := p.rcv.Active(); ok && p.progressAt > 0 && got >= p.progressAt && !p.progressed {
			p.progressed = true
			_ = ctx.Send(p.report, received{progress: true})
		}
	case actor.Terminating:
		p.rcv.Close()
	}
}

// nodePair is two nodes, a store on each, and the test's inboxes.
type nodePair struct {
	a, b     *actor.Node
	srcStore *Store
	dstStore *Store
	dstDir   string
	ibA, ibB *actor.Inbox
}

func newNodePair(t testing.TB) *nodePair {
	p := &nodePair{a: startNode(t), b: startNode(t), dstDir: t.TempDir()}
	p.srcStore = openStore(t, t.TempDir(), Options{})
	p.dstStore = openStore(t, p.dstDir, Options{})
	p.ibA, p.ibB = newInbox(t, p.a), newInbox(t, p.b)
	return p
}

// writeOnA writes a streamed state of size bytes through a snapshot
// writer process on node a.
func (p *nodePair) writeOnA(t testing.TB, uid string, size int64) (Info, *streamSource) {
	w, err := StartWriter(p.a, p.srcStore, WriterOptions{Name: "writer-" + uid})
	require.NoError(t, err)
	defer func() { require.NoError(t, w.Stop(waitFor)) }()
	_, bench := t.(*testing.B)
	src := &streamSource{size: size, skipSum: bench}
	require.NoError(t, w.Submit(Write{UID: uid, Index: 500, Term: 4, Meta: []byte("meta"), Data: src, Notify: p.ibA.Ref()}))
	m, err := p.ibA.ReceiveTimeout(time.Minute)
	require.NoError(t, err)
	written, ok := m.(Written)
	require.True(t, ok, "got %T %+v", m, m)
	return written.Info, src
}

func (p *nodePair) spawnReceiver(t testing.TB, uid string, progressAt int64) actor.Ref {
	rcv, err := NewReceiver(p.dstStore, uid, ReceiverConfig{})
	require.NoError(t, err)
	ref, err := p.b.SpawnNamed("receiver-"+uid, &recvProc{
		rcv: rcv, ackTo: actor.Ref{Name: "sender-" + uid, Node: p.a.Name()}, report: p.ibB.Ref(), progressAt: progressAt,
	})
	require.NoError(t, err)
	return ref
}

func (p *nodePair) spawnSender(t testing.TB, info Info, cfg SenderConfig, tick time.Duration, rng *rand.Rand, f faults) actor.Ref {
	snd, err := NewSender(p.srcStore, info, cfg)
	require.NoError(t, err)
	ref, err := p.a.SpawnNamed("sender-"+info.UID, &sendProc{
		snd: snd, to: actor.Ref{Name: "receiver-" + info.UID, Node: p.b.Name()}, report: p.ibA.Ref(), tick: tick, rng: rng, f: f,
	})
	require.NoError(t, err)
	return ref
}

// awaitInstalled waits on b's inbox for the install (skipping other
// reports) and on a's for the sender's end.
func (p *nodePair) awaitInstalled(t testing.TB, limit time.Duration) (Info, []received) {
	t.Helper()
	var seen []received
	for {
		m, err := p.ibB.ReceiveTimeout(limit)
		require.NoError(t, err, "waiting for the install")
		r := m.(received)
		seen = append(seen, r)
		require.NoError(t, r.res.Err)
		if r.res.Installed {
			m, err := p.ibA.ReceiveTimeout(limit)
			require.NoError(t, err, "waiting for the sender")
			d := m.(senderDone)
			require.True(t, d.done, "sender ended with %v", d.err)
			return r.res.Info, seen
		}
	}
}

// checkRestored reads the installed snapshot on b back and compares it
// with what the source wrote.
func (p *nodePair) checkRestored(t testing.TB, want Info, src *streamSource) {
	t.Helper()
	latest, corrupt, err := p.dstStore.Latest(want.UID)
	require.NoError(t, err)
	require.Empty(t, corrupt)
	require.Equal(t, want, latest)
	r, err := p.dstStore.Open(latest)
	require.NoError(t, err)
	defer r.Close()
	require.Equal(t, "meta", string(r.Meta()))
	h := crc64.New(crc64.MakeTable(crc64.ECMA))
	n, err := io.Copy(h, r)
	require.NoError(t, err)
	require.Equal(t, src.size, n)
	require.Equal(t, src.sum, h.Sum64())
}

func TestTransferBetweenNodes(t *testing.T) {
	p := newNodePair(t)
	info, src := p.writeOnA(t, "u1", 12<<20+12345)
	p.spawnReceiver(t, "u1", 0)
	p.spawnSender(t, info, SenderConfig{ChunkBytes: 256 << 10}, 100*time.Millisecond, nil, faults{})
	got, _ := p.awaitInstalled(t, time.Minute)
	require.Equal(t, info, got)
	p.checkRestored(t, info, src)
}

func TestTransferBetweenNodesOverAFaultyLink(t *testing.T) {
	p := newNodePair(t)
	info, src := p.writeOnA(t, "u2", 3<<20+777)
	p.spawnReceiver(t, "u2", 0)
	cfg := SenderConfig{ChunkBytes: 64 << 10, Window: 8, RetryAfter: 100 * time.Millisecond, GiveUpAfter: time.Minute}
	p.spawnSender(t, info, cfg, 20*time.Millisecond, rand.New(rand.NewPCG(7, 7)), faults{drop: 0.1, dup: 0.1, reorder: 0.2})
	got, _ := p.awaitInstalled(t, time.Minute)
	require.Equal(t, info, got)
	p.checkRestored(t, info, src)
}

func TestTransferBetweenNodesResumesAfterTheReceiverRestarts(t *testing.T) {
	p := newNodePair(t)
	info, src := p.writeOnA(t, "u3", 8<<20)
	ref := p.spawnReceiver(t, "u3", info.Size/2)
	cfg := SenderConfig{ChunkBytes: 128 << 10, Window: 4, RetryAfter: 200 * time.Millisecond, GiveUpAfter: time.Minute}
	p.spawnSender(t, info, cfg, 50*time.Millisecond, nil, faults{})
	for {
		m, err := p.ibB.ReceiveTimeout(waitFor)
		require.NoError(t, err)
		if r := m.(received); r.progress {
			break
		}
	}
	// The follower's server dies half way; its node restarts the store
	// and a new server process.
	require.NoError(t, p.b.Exit(ref, actor.Reason{Kind: actor.ReasonKilled}))
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	require.NoError(t, p.b.Wait(ctx, ref))
	for {
		if _, err := p.ibB.ReceiveTimeout(10 * time.Millisecond); err != nil {
			break // drain reports of the old process
		}
	}
	p.dstStore = openStore(t, p.dstDir, Options{})
	p.spawnReceiver(t, "u3", 0)

	got, seen := p.awaitInstalled(t, time.Minute)
	require.Equal(t, info, got)
	require.True(t, seen[0].first)
	first := seen[0].res.Ack
	require.Contains(t, []AckStatus{AckProgress, AckResend}, first.Status)
	require.GreaterOrEqual(t, first.Next, uint64(info.Size/2)-DefaultBlockBytes-blockHeaderBytes-crcBytes,
		"the new receiver resumes from the verified part of the old one's copy")
	p.checkRestored(t, info, src)
}
