package snapshot

import (
	"bytes"
	"encoding/binary"
	"hash/crc64"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// faults is what simNet does to messages, each a probability.
type faults struct {
	drop, dup, reorder, corrupt, dropAck float64
}

// simNet carries chunks and acks between a Sender and a Receiver in one
// goroutine, with seeded faults, and drives time.
type simNet struct {
	t      *testing.T
	rng    *rand.Rand
	f      faults
	chunks []Chunk
	acks   []ChunkAck
	now    time.Time

	sentBytes int64 // chunk data bytes the sender produced
	acksSeen  []ChunkAck
	installed *Received
	failure   *Received
	// dropInstalled drops AckInstalled acks while set.
	dropInstalled bool
	// stopWhen, if set, ends run when it returns true.
	stopWhen func() bool
}

func newSimNet(t *testing.T, seed uint64, f faults) *simNet {
	return &simNet{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), f: f, now: time.Unix(1000, 0)}
}

func (n *simNet) sendChunks(cs []Chunk) {
	for _, c := range cs {
		n.sentBytes += int64(len(c.Data))
		if n.rng.Float64() < n.f.drop {
			continue
		}
		if n.rng.Float64() < n.f.corrupt {
			bad := c
			bad.Data = bytes.Clone(c.Data)
			bad.Data[n.rng.IntN(len(bad.Data))] ^= 0x40
			n.chunks = append(n.chunks, bad)
			continue
		}
		n.chunks = append(n.chunks, c)
		if n.rng.Float64() < n.f.dup {
			n.chunks = append(n.chunks, c)
		}
	}
}

func (n *simNet) sendAck(a ChunkAck) {
	if n.rng.Float64() < n.f.dropAck || (n.dropInstalled && a.Status == AckInstalled) {
		return
	}
	n.acks = append(n.acks, a)
}

// pop takes the next message of q, or with probability reorder a later
// one.
func pop[T any](n *simNet, q *[]T) T {
	i := 0
	if len(*q) > 1 && n.rng.Float64() < n.f.reorder {
		i = 1 + n.rng.IntN(min(len(*q)-1, 4))
	}
	m := (*q)[i]
	*q = append((*q)[:i], (*q)[i+1:]...)
	return m
}

// run moves messages until the sender finishes, stopWhen holds, or
// maxSteps passed. Time advances only when nothing is in flight.
func (n *simNet) run(snd *Sender, rcv *Receiver, maxSteps int) {
	t := n.t
	if !snd.started {
		cs, err := snd.Start(n.now)
		require.NoError(t, err)
		n.sendChunks(cs)
	}
	for step := 0; step < maxSteps; step++ {
		if snd.Finished() || (n.stopWhen != nil && n.stopWhen()) {
			return
		}
		deliverChunk := len(n.chunks) > 0 && (len(n.acks) == 0 || n.rng.IntN(2) == 0)
		switch {
		case deliverChunk:
			res := rcv.Receive(pop(n, &n.chunks), n.now)
			if res.Reply {
				n.sendAck(res.Ack)
			}
			if res.Installed {
				r := res
				n.installed = &r
			}
			if res.Err != nil {
				r := res
				n.failure = &r
			}
		case len(n.acks) > 0:
			a := pop(n, &n.acks)
			n.acksSeen = append(n.acksSeen, a)
			cs, _ := snd.HandleAck(a, n.now)
			n.sendChunks(cs)
		default:
			n.now = n.now.Add(snd.cfg.RetryAfter)
			rcv.Tick(n.now)
			cs, _ := snd.Tick(n.now)
			n.sendChunks(cs)
		}
	}
	if !(n.stopWhen != nil && n.stopWhen()) {
		require.True(t, snd.Finished(), "transfer did not finish in %d steps (acked %d)", maxSteps, snd.acked)
	}
}

// transferPair builds a sender store with one snapshot and an empty
// receiver store.
type transferPair struct {
	src, dst   *Store
	dstDir     string
	info       Info
	meta, data []byte
}

func newTransferPair(t *testing.T, size int) *transferPair {
	p := &transferPair{dstDir: t.TempDir(), meta: []byte("members: a b c"), data: pattern(uint64(size), size)}
	p.src = openStore(t, t.TempDir(), Options{BlockBytes: 1000})
	p.dst = openStore(t, p.dstDir, Options{})
	p.info = writeSnap(t, p.src, "u", 100, 7, p.meta, p.data, 4096)
	return p
}

var testSenderConfig = SenderConfig{ChunkBytes: 700, Window: 4, RetryAfter: time.Second, GiveUpAfter: time.Minute}

func (p *transferPair) sender(t *testing.T, transfer uint64) *Sender {
	cfg := testSenderConfig
	cfg.Transfer = transfer
	s, err := NewSender(p.src, p.info, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func (p *transferPair) receiver(t *testing.T) *Receiver {
	r, err := NewReceiver(p.dst, "u", ReceiverConfig{})
	require.NoError(t, err)
	t.Cleanup(r.Close)
	return r
}

// checkInstalled requires that the receiver's store holds exactly the
// sender's snapshot and no partial files.
func (p *transferPair) checkInstalled(t *testing.T, n *simNet) {
	t.Helper()
	require.NotNil(t, n.installed, "nothing installed")
	got := n.installed.Info
	require.Equal(t, p.info, got)
	latest, _, err := p.dst.Latest("u")
	require.NoError(t, err)
	require.Equal(t, p.info, latest)
	meta, data, err := readAll(p.dst, latest)
	require.NoError(t, err)
	require.Equal(t, p.meta, meta)
	require.True(t, bytes.Equal(p.data, data))
	require.Equal(t, []string{snapName(100, 7)}, dirNames(t, p.dst, "u"))
}

func TestTransferComplete(t *testing.T) {
	p := newTransferPair(t, 50_000)
	snd, rcv := p.sender(t, 1), p.receiver(t)
	n := newSimNet(t, 1, faults{})
	n.run(snd, rcv, 10_000)
	require.True(t, snd.Done())
	require.NoError(t, snd.Err())
	p.checkInstalled(t, n)
	require.Equal(t, p.info.Size, n.sentBytes, "a clean transfer sends every byte once")
	acked, size := snd.Progress()
	require.Equal(t, size, acked)
}

func TestTransferFaultyNetwork(t *testing.T) {
	for seed := uint64(1); seed <= 25; seed++ {
		p := newTransferPair(t, 30_000+int(seed)*977)
		snd, rcv := p.sender(t, 1), p.receiver(t)
		n := newSimNet(t, seed, faults{drop: 0.1, dup: 0.1, reorder: 0.3, corrupt: 0.05, dropAck: 0.1})
		n.run(snd, rcv, 200_000)
		require.True(t, snd.Done(), "seed %d: %v", seed, snd.Err())
		p.checkInstalled(t, n)
	}
}

func TestTransferCorruptChunkIsResent(t *testing.T) {
	p := newTransferPair(t, 20_000)
	snd, rcv := p.sender(t, 1), p.receiver(t)
	n := newSimNet(t, 3, faults{corrupt: 0.2})
	n.run(snd, rcv, 100_000)
	p.checkInstalled(t, n)
	resends := 0
	for _, a := range n.acksSeen {
		if a.Status == AckResend {
			resends++
		}
	}
	require.Positive(t, resends, "corrupt chunks must be answered with resend requests")
}

// interrupt runs a transfer until the receiver holds at least frac of the
// file, then drops everything in flight.
func interrupt(t *testing.T, p *transferPair, snd *Sender, rcv *Receiver, frac float64) int64 {
	n := newSimNet(t, 1, faults{})
	n.stopWhen = func() bool {
		_, got, ok := rcv.Active()
		return ok && float64(got) >= frac*float64(p.info.Size)
	}
	n.run(snd, rcv, 100_000)
	_, got, ok := rcv.Active()
	require.True(t, ok)
	return got
}

func TestTransferResumesInMemory(t *testing.T) {
	p := newTransferPair(t, 60_000)
	snd1, rcv := p.sender(t, 10), p.receiver(t)
	got := interrupt(t, p, snd1, rcv, 0.5)
	require.NoError(t, snd1.Close())

	// A new attempt of the same snapshot continues where the receiver is.
	snd2 := p.sender(t, 11)
	n := newSimNet(t, 2, faults{})
	n.run(snd2, rcv, 100_000)
	p.checkInstalled(t, n)
	require.Equal(t, AckProgress, n.acksSeen[0].Status)
	require.Equal(t, uint64(got), n.acksSeen[0].Next, "resumed at the received offset")
	require.LessOrEqual(t, n.sentBytes, p.info.Size-got+int64(testSenderConfig.ChunkBytes))
}

func TestTransferResumesAfterReceiverRestart(t *testing.T) {
	p := newTransferPair(t, 60_000)
	snd1, rcv1 := p.sender(t, 10), p.receiver(t)
	got := interrupt(t, p, snd1, rcv1, 0.6)
	require.NoError(t, snd1.Close())
	rcv1.Close()

	// The follower restarts: a new store over the same directory, a new
	// receiver, and a new transfer of the same snapshot.
	p.dst = openStore(t, p.dstDir, Options{})
	rcv2, snd2 := p.receiver(t), p.sender(t, 11)
	n := newSimNet(t, 2, faults{})
	n.run(snd2, rcv2, 100_000)
	p.checkInstalled(t, n)
	resumed := int64(n.acksSeen[0].Next)
	// The verified prefix ends at a block boundary of the sender's file
	// (1000-byte blocks), at most one block short of what was received.
	require.Greater(t, resumed, got-1009-1)
	require.LessOrEqual(t, resumed, got)
	require.LessOrEqual(t, n.sentBytes, p.info.Size-resumed+int64(testSenderConfig.ChunkBytes))
}

func TestTransferResumeSkipsADamagedTail(t *testing.T) {
	p := newTransferPair(t, 60_000)
	snd1, rcv1 := p.sender(t, 10), p.receiver(t)
	got := interrupt(t, p, snd1, rcv1, 0.7)
	rcv1.Close()
	part := filepath.Join(p.dstDir, "u", partName(p.info.Index, p.info.Term, p.info.ID))
	// Damage a byte well inside the received part.
	flipBit(t, part, 8*(got/2))

	p.dst = openStore(t, p.dstDir, Options{})
	rcv2, snd2 := p.receiver(t), p.sender(t, 11)
	n := newSimNet(t, 2, faults{})
	n.run(snd2, rcv2, 100_000)
	p.checkInstalled(t, n)
	require.Less(t, int64(n.acksSeen[0].Next), got/2, "resumes before the damage")
}

func TestTransferRestartsWhenReceiverLostItsCopy(t *testing.T) {
	p := newTransferPair(t, 40_000)
	snd, rcv1 := p.sender(t, 10), p.receiver(t)
	interrupt(t, p, snd, rcv1, 0.5)
	rcv1.Discard()
	require.Empty(t, dirNames(t, p.dst, "u"))

	// The same sender goes on; the new receiver knows nothing and asks
	// for the start.
	rcv2 := p.receiver(t)
	n := newSimNet(t, 2, faults{})
	n.sendChunks(nil)
	n.run(snd, rcv2, 100_000)
	p.checkInstalled(t, n)
	require.Equal(t, AckResend, n.acksSeen[0].Status)
	require.Zero(t, n.acksSeen[0].Next)
}

func TestTransferOfAnotherSnapshotReplacesTheCurrentOne(t *testing.T) {
	p := newTransferPair(t, 40_000)
	snd1, rcv := p.sender(t, 10), p.receiver(t)
	interrupt(t, p, snd1, rcv, 0.5)
	require.Equal(t, 1, countSuffix(dirNames(t, p.dst, "u"), ".part"))

	// The leader moved on to a newer snapshot.
	p.meta, p.data = []byte("newer"), pattern(77, 25_000)
	old := p.info
	p.info = writeSnap(t, p.src, "u", 200, 8, p.meta, p.data, 4096)
	snd2 := p.sender(t, 11)
	n := newSimNet(t, 2, faults{})
	n.run(snd2, rcv, 100_000)
	require.True(t, snd2.Done())
	require.Equal(t, p.info, n.installed.Info)
	require.Equal(t, []string{snapName(200, 8)}, dirNames(t, p.dst, "u"))

	// A late chunk of the old snapshot is refused as stale.
	c := Chunk{Transfer: 10, Index: old.Index, Term: old.Term, ID: old.ID, Size: uint64(old.Size), Offset: 0, Data: []byte{1}}
	c.CRC = c.Checksum()
	res := rcv.Receive(c, n.now)
	require.True(t, res.Reply)
	require.Equal(t, AckRejected, res.Ack.Status)
	require.Equal(t, RejectStale, res.Ack.Reason)
}

func TestTransferOlderAttemptIsIgnored(t *testing.T) {
	p := newTransferPair(t, 40_000)
	snd1, rcv := p.sender(t, 10), p.receiver(t)
	interrupt(t, p, snd1, rcv, 0.3)
	snd2 := p.sender(t, 11)
	cs, err := snd2.Start(time.Unix(1, 0))
	require.NoError(t, err)
	require.True(t, rcv.Receive(cs[0], time.Unix(1, 0)).Reply)
	// Chunks of attempt 10 arriving late are dropped unanswered.
	late, err := snd1.Tick(time.Unix(1e6, 0))
	require.ErrorIs(t, err, ErrTimeout)
	require.Empty(t, late)
	_, got, _ := rcv.Active()
	c := Chunk{Transfer: 10, Index: p.info.Index, Term: p.info.Term, ID: p.info.ID, Size: uint64(p.info.Size), Offset: uint64(got), Data: []byte{1}}
	c.CRC = c.Checksum()
	require.False(t, rcv.Receive(c, time.Unix(2, 0)).Reply)
	// So are chunks of the current transfer that name another snapshot.
	c.Transfer, c.ID = 11, c.ID+1
	c.CRC = c.Checksum()
	require.False(t, rcv.Receive(c, time.Unix(2, 0)).Reply)
	_, still, ok := rcv.Active()
	require.True(t, ok)
	require.Equal(t, got, still)
}

func TestTransferStaleAndAlreadyInstalled(t *testing.T) {
	p := newTransferPair(t, 10_000)
	// The receiver already has a newer snapshot.
	writeSnap(t, p.dst, "u", 150, 7, nil, []byte("newer"), 10)
	snd, rcv := p.sender(t, 1), p.receiver(t)
	n := newSimNet(t, 1, faults{})
	n.run(snd, rcv, 1000)
	require.False(t, snd.Done())
	var rej *RejectedError
	require.ErrorAs(t, snd.Err(), &rej)
	require.Equal(t, RejectStale, rej.Reason)
	require.ErrorIs(t, snd.Err(), ErrRejected)
	require.Equal(t, []string{snapName(150, 7)}, dirNames(t, p.dst, "u"))

	// The very same snapshot is answered as installed (a sender that
	// missed the first AckInstalled).
	p2 := newTransferPair(t, 10_000)
	snd, rcv = p2.sender(t, 1), p2.receiver(t)
	n = newSimNet(t, 1, faults{})
	n.dropInstalled = true
	n.stopWhen = func() bool { return n.installed != nil }
	n.run(snd, rcv, 10_000)
	require.False(t, snd.Finished())
	n.dropInstalled, n.stopWhen = false, nil
	n.run(snd, rcv, 10_000)
	require.True(t, snd.Done())
	p2.checkInstalled(t, n)
}

func TestTransferOfACorruptSnapshotIsRejected(t *testing.T) {
	p := newTransferPair(t, 30_000)
	// Damage the sender's file in the middle: chunk checksums are computed
	// over the damaged bytes, so only the format's checks can tell.
	flipBit(t, filepath.Join(p.src.Dir(), "u", snapName(100, 7)), 8*15_000)
	snd, rcv := p.sender(t, 1), p.receiver(t)
	n := newSimNet(t, 1, faults{})
	n.run(snd, rcv, 10_000)
	require.False(t, snd.Done())
	var rej *RejectedError
	require.ErrorAs(t, snd.Err(), &rej)
	require.Equal(t, RejectCorrupt, rej.Reason)
	require.NotNil(t, n.failure)
	require.ErrorIs(t, n.failure.Err, ErrCorrupt)
	require.Nil(t, n.installed)
	require.Empty(t, dirNames(t, p.dst, "u"), "nothing of the corrupt snapshot stays")
	require.ErrorIs(t, p.src.Verify(p.info), ErrCorrupt, "the sender's server can confirm with Verify")
}

func TestTransferStorageFailureIsRejected(t *testing.T) {
	p := newTransferPair(t, 30_000)
	ffs := newFaultFS()
	ffs.suffix = ".part"
	ffs.set(func(f *faultFS) { f.writeBudget = 10_000 })
	p.dst = openStore(t, p.dstDir, Options{FS: ffs})
	snd, rcv := p.sender(t, 1), p.receiver(t)
	n := newSimNet(t, 1, faults{})
	n.run(snd, rcv, 10_000)
	var rej *RejectedError
	require.ErrorAs(t, snd.Err(), &rej)
	require.Equal(t, RejectStorage, rej.Reason)
	require.ErrorIs(t, n.failure.Err, ErrIO)
	require.Empty(t, dirNames(t, p.dst, "u"))
}

func TestSenderRetriesAndTimesOut(t *testing.T) {
	p := newTransferPair(t, 10_000)
	snd := p.sender(t, 5)
	t0 := time.Unix(0, 0)
	cs, err := snd.Start(t0)
	require.NoError(t, err)
	require.Len(t, cs, 1, "the first chunk probes where the receiver stands")
	require.Zero(t, cs[0].Offset)
	require.Equal(t, uint64(5), cs[0].Transfer)
	require.Equal(t, cs[0].CRC, cs[0].Checksum())

	cs, _ = snd.Tick(t0.Add(testSenderConfig.RetryAfter / 2))
	require.Empty(t, cs)
	// Acks of another transfer change nothing.
	cs, _ = snd.HandleAck(ChunkAck{Transfer: 6, Next: 700, Status: AckProgress}, t0)
	require.Empty(t, cs)
	cs, _ = snd.Tick(t0.Add(testSenderConfig.RetryAfter))
	require.Len(t, cs, 1)
	require.Zero(t, cs[0].Offset)

	// Progress opens the window: 4 chunks in flight from 700.
	cs, _ = snd.HandleAck(ChunkAck{Transfer: 5, Next: 700, Status: AckProgress}, t0.Add(2*time.Second))
	require.Len(t, cs, 4)
	require.Equal(t, uint64(700), cs[0].Offset)
	require.Equal(t, uint64(700+3*700), cs[3].Offset)
	// A resend request goes back once per offset.
	cs, _ = snd.HandleAck(ChunkAck{Transfer: 5, Next: 1400, Status: AckResend}, t0.Add(2*time.Second))
	require.NotEmpty(t, cs)
	require.Equal(t, uint64(1400), cs[0].Offset)
	cs, _ = snd.HandleAck(ChunkAck{Transfer: 5, Next: 1400, Status: AckResend}, t0.Add(2*time.Second))
	require.Empty(t, cs)

	_, err = snd.Tick(t0.Add(2*time.Second + testSenderConfig.GiveUpAfter))
	require.ErrorIs(t, err, ErrTimeout)
	require.True(t, snd.Finished())
	require.ErrorIs(t, snd.Err(), ErrTimeout)
	cs, err = snd.HandleAck(ChunkAck{Transfer: 5, Next: 2100, Status: AckProgress}, t0)
	require.NoError(t, err)
	require.Empty(t, cs)
}

func TestSenderAndReceiverArguments(t *testing.T) {
	p := newTransferPair(t, 1000)
	for _, cfg := range []SenderConfig{
		{ChunkBytes: MaxChunkBytes + 1},
		{Window: -1},
		{RetryAfter: time.Minute, GiveUpAfter: time.Second},
	} {
		_, err := NewSender(p.src, p.info, cfg)
		require.ErrorIs(t, err, ErrInvalid)
	}
	missing := p.info
	missing.Index = 99
	_, err := NewSender(p.src, missing, SenderConfig{})
	require.ErrorIs(t, err, ErrNotFound)
	wrongID := p.info
	wrongID.ID++
	_, err = NewSender(p.src, wrongID, SenderConfig{})
	require.ErrorIs(t, err, ErrCorrupt)
	_, err = NewReceiver(p.dst, "a/b", ReceiverConfig{})
	require.ErrorIs(t, err, ErrInvalid)
	a, b := NewTransferID(), NewTransferID()
	require.Greater(t, b, a)
}

func TestReceiverSetsIdleTransfersAside(t *testing.T) {
	p := newTransferPair(t, 20_000)
	snd := p.sender(t, 1)
	rcv, err := NewReceiver(p.dst, "u", ReceiverConfig{IdleTimeout: time.Minute})
	require.NoError(t, err)
	t0 := time.Unix(0, 0)
	cs, _ := snd.Start(t0)
	rcv.Receive(cs[0], t0)
	_, got, ok := rcv.Active()
	require.True(t, ok)
	require.Equal(t, int64(700), got)
	rcv.Tick(t0.Add(59 * time.Second))
	_, _, ok = rcv.Active()
	require.True(t, ok)
	rcv.Tick(t0.Add(time.Minute))
	_, _, ok = rcv.Active()
	require.False(t, ok)
	require.Equal(t, 1, countSuffix(dirNames(t, p.dst, "u"), ".part"), "the partial copy stays for resume")
}

// streamSource writes size bytes made of a 1 MiB block whose first 8 bytes
// count the MiB, so the state never exists in memory as a whole, and
// checksums what it wrote.
type streamSource struct {
	size    int64
	sum     uint64
	skipSum bool // benchmarks measure the store, not the checksum
}

func (s *streamSource) WriteTo(w io.Writer) (int64, error) {
	block := pattern(42, 1<<20)
	h := crc64.New(crc64.MakeTable(crc64.ECMA))
	var total int64
	for i := uint64(0); total < s.size; i++ {
		binary.LittleEndian.PutUint64(block, i)
		n := min(int64(len(block)), s.size-total)
		if _, err := w.Write(block[:n]); err != nil {
			return total, err
		}
		if !s.skipSum {
			h.Write(block[:n])
		}
		total += n
	}
	s.sum = h.Sum64()
	return total, nil
}

func (s *streamSource) Release() {}

func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func TestTransferHugeStateIsStreamed(t *testing.T) {
	size := int64(64 << 20)
	if testing.Short() {
		size = 16 << 20
	}
	base := liveHeap()
	src := openStore(t, t.TempDir(), Options{})
	dst := openStore(t, t.TempDir(), Options{})
	pend, err := src.Begin("big", 1000, 3, []byte("meta"))
	require.NoError(t, err)
	gen := &streamSource{size: size}
	_, err = gen.WriteTo(pend)
	require.NoError(t, err)
	info, err := pend.Commit()
	require.NoError(t, err)
	require.Equal(t, size, info.DataSize)

	cfg := SenderConfig{ChunkBytes: 1 << 20, Window: 4, Transfer: 1}
	snd, err := NewSender(src, info, cfg)
	require.NoError(t, err)
	defer snd.Close()
	rcv, err := NewReceiver(dst, "big", ReceiverConfig{})
	require.NoError(t, err)
	n := newSimNet(t, 1, faults{})
	var peak uint64
	steps := 0
	n.stopWhen = func() bool {
		if steps++; steps%16 == 0 {
			peak = max(peak, liveHeap())
		}
		return false
	}
	n.run(snd, rcv, 1_000_000)
	require.True(t, snd.Done())
	require.NotNil(t, n.installed)
	// Live memory stays around the window (4 MiB in flight plus buffers),
	// far below the state's size.
	t.Logf("state %d MiB, live heap at most %d MiB above the start", size>>20, (max(peak, base)-base)>>20)
	require.Less(t, peak, base+32<<20, "live heap grew by %d MiB", (peak-base)>>20)

	r, err := dst.Open(n.installed.Info)
	require.NoError(t, err)
	defer r.Close()
	h := crc64.New(crc64.MakeTable(crc64.ECMA))
	copied, err := io.Copy(h, r)
	require.NoError(t, err)
	require.Equal(t, size, copied)
	require.Equal(t, gen.sum, h.Sum64())
	require.NoError(t, os.RemoveAll(src.Dir()))
}
