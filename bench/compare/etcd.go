package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// The etcd-io/raft harness is the minimum an application must write around
// the library to run it durably: the classic Ready loop (persist, then
// send, then apply, then Advance), MemoryStorage for the entries raft
// reads back, an append-only file fdatasynced once per Ready before any of
// its messages leave, and a TCP transport on loopback. Its configuration
// is the one of etcd's raftexample.
const (
	etcdTick = 100 * time.Millisecond
	// Like etcd's server: every snapshotEvery applied entries the
	// MemoryStorage is snapshotted and compacted, keeping catchUpEntries
	// for slow followers, so that memory holds a bounded log as in etcd.
	etcdSnapshotEvery  = 10000
	etcdCatchUpEntries = 5000
	// The log file grows in preallocated chunks, as etcd's WAL segments
	// do, so an fdatasync need not also commit the file's new size.
	etcdPrealloc = 64 << 20
	// Frames waiting for a peer's connection; more are dropped and the
	// peer reported unreachable (etcd's stream buffer is 4096 too).
	etcdSendBuffer = 4096
)

// Record kinds in the log file.
const (
	recHardState = 1
	recEntry     = 2
	recSnapshot  = 3
)

type etcdCluster struct {
	nodes  []*etcdNode
	leader *etcdNode
}

type etcdNode struct {
	id      uint64
	node    raft.Node
	storage *raft.MemoryStorage
	logf    *os.File
	offset  int64 // where the next record goes in logf
	alloc   int64 // logf's preallocated size
	buf     []byte
	ln      net.Listener
	peers   map[uint64]*etcdPeer

	// State machine, touched only by the Ready loop (count is read by
	// applied() too).
	count     atomic.Uint64
	applied   uint64
	snapIndex uint64 // the MemoryStorage's snapshot's index
	confState *pb.ConfState

	nextID  atomic.Uint64
	waitMu  sync.Mutex
	waiters map[uint64]chan struct{}

	stop    chan struct{}
	done    chan struct{}
	failure atomic.Pointer[error]
	connsMu sync.Mutex
	conns   []net.Conn
}

// quietLogger keeps raft's warnings and errors but not its info lines
// about every election.
type quietLogger struct{ *raft.DefaultLogger }

func (quietLogger) Info(...any)          {}
func (quietLogger) Infof(string, ...any) {}

func startEtcd(dir string) (cluster, error) {
	c := &etcdCluster{}
	logger := quietLogger{&raft.DefaultLogger{Logger: log.New(os.Stderr, "etcd-raft ", log.LstdFlags)}}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	addrs := map[uint64]string{}
	var peers []raft.Peer
	for i := range 3 {
		id := uint64(i + 1)
		nd := &etcdNode{
			id:      id,
			storage: raft.NewMemoryStorage(),
			peers:   map[uint64]*etcdPeer{},
			waiters: map[uint64]chan struct{}{},
			stop:    make(chan struct{}),
			done:    make(chan struct{}),
		}
		nd.nextID.Store(id << 56)
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("n%d.log", id)), os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
		if err != nil {
			_ = c.close()
			return nil, err
		}
		nd.logf = f
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			_ = f.Close()
			_ = c.close()
			return nil, err
		}
		nd.ln = ln
		addrs[id] = ln.Addr().String()
		c.nodes = append(c.nodes, nd)
		peers = append(peers, raft.Peer{ID: id})
	}
	for _, nd := range c.nodes {
		for id, addr := range addrs {
			if id != nd.id {
				nd.peers[id] = newEtcdPeer(nd, id, addr)
			}
		}
		nd.node = raft.StartNode(&raft.Config{
			ID:                        nd.id,
			ElectionTick:              10,
			HeartbeatTick:             1,
			Storage:                   nd.storage,
			MaxSizePerMsg:             1024 * 1024,
			MaxInflightMsgs:           256,
			MaxUncommittedEntriesSize: 1 << 30,
			Logger:                    logger,
		}, peers)
		go nd.accept()
		go nd.run()
	}
	deadline := time.Now().Add(30 * time.Second)
	for c.leader == nil {
		for _, nd := range c.nodes {
			if nd.node.Status().RaftState == raft.StateLeader {
				c.leader = nd
			}
			if err := nd.failure.Load(); err != nil {
				_ = c.close()
				return nil, *err
			}
		}
		if c.leader == nil {
			if time.Now().After(deadline) {
				_ = c.close()
				return nil, errors.New("etcd: no leader after 30 s")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return c, nil
}

// propose proposes an entry of an 8-byte id and cmd on the leader and
// waits until the leader's Ready loop applied it. The id is how the
// application finds the caller again: raft itself gives no handle.
func (c *etcdCluster) propose(ctx context.Context, cmd []byte) error {
	nd := c.leader
	if err := nd.failure.Load(); err != nil {
		return *err
	}
	id := nd.nextID.Add(1)
	data := make([]byte, 8+len(cmd))
	binary.BigEndian.PutUint64(data, id)
	copy(data[8:], cmd)
	ch := make(chan struct{})
	nd.waitMu.Lock()
	nd.waiters[id] = ch
	nd.waitMu.Unlock()
	forget := func() {
		nd.waitMu.Lock()
		delete(nd.waiters, id)
		nd.waitMu.Unlock()
	}
	if err := nd.node.Propose(ctx, data); err != nil {
		forget()
		return err
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		forget()
		return ctx.Err()
	case <-nd.done:
		forget()
		return errors.New("etcd: node stopped")
	}
}

func (c *etcdCluster) applied() uint64 {
	if c.leader == nil {
		return 0
	}
	return c.leader.count.Load()
}

func (c *etcdCluster) close() error {
	var errs []error
	for _, nd := range c.nodes {
		errs = append(errs, nd.shutdown())
	}
	return errors.Join(errs...)
}

// run is the classic Ready loop.
func (nd *etcdNode) run() {
	defer close(nd.done)
	ticker := time.NewTicker(etcdTick)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
			nd.node.Tick()
		case rd := <-nd.node.Ready():
			if err := nd.handle(rd); err != nil {
				// A node that cannot persist must not go on: it stops
				// taking part, and proposals see the failure.
				nd.failure.Store(&err)
				nd.node.Stop()
				return
			}
			nd.node.Advance()
		case <-nd.stop:
			nd.node.Stop()
			return
		}
	}
}

func (nd *etcdNode) handle(rd raft.Ready) error {
	// 1. Persist HardState, entries and snapshot, durably.
	if err := nd.persist(rd); err != nil {
		return err
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := nd.storage.ApplySnapshot(rd.Snapshot); err != nil {
			return err
		}
	}
	if rd.HardState != nil && !raft.IsEmptyHardState(rd.HardState) {
		if err := nd.storage.SetHardState(rd.HardState); err != nil {
			return err
		}
	}
	if err := nd.storage.Append(rd.Entries); err != nil {
		return err
	}
	// 2. Send, only now that everything they may depend on is durable.
	for _, m := range rd.Messages {
		if err := nd.send(m); err != nil {
			return err
		}
	}
	// 3. Apply.
	if !raft.IsEmptySnap(rd.Snapshot) {
		md := rd.Snapshot.GetMetadata()
		nd.count.Store(binary.BigEndian.Uint64(rd.Snapshot.GetData()))
		nd.applied = md.GetIndex()
		nd.snapIndex = md.GetIndex()
		nd.confState = md.GetConfState()
	}
	for _, e := range rd.CommittedEntries {
		if err := nd.apply(e); err != nil {
			return err
		}
	}
	return nd.maybeCompact()
}

// persist writes rd's records to the log file and fdatasyncs it once.
func (nd *etcdNode) persist(rd raft.Ready) error {
	nd.buf = nd.buf[:0]
	var err error
	if !raft.IsEmptySnap(rd.Snapshot) {
		if nd.buf, err = appendRecord(nd.buf, recSnapshot, rd.Snapshot); err != nil {
			return err
		}
	}
	if rd.HardState != nil && !raft.IsEmptyHardState(rd.HardState) {
		if nd.buf, err = appendRecord(nd.buf, recHardState, rd.HardState); err != nil {
			return err
		}
	}
	for _, e := range rd.Entries {
		if nd.buf, err = appendRecord(nd.buf, recEntry, e); err != nil {
			return err
		}
	}
	if len(nd.buf) == 0 {
		return nil
	}
	if end := nd.offset + int64(len(nd.buf)); end > nd.alloc {
		size := (end/etcdPrealloc + 1) * etcdPrealloc
		// Where the file system cannot preallocate, the file grows with
		// each write instead; the fdatasync then also commits its size.
		if err := syscall.Fallocate(int(nd.logf.Fd()), 0, nd.alloc, size-nd.alloc); err == nil {
			nd.alloc = size
		}
	}
	if _, err := nd.logf.WriteAt(nd.buf, nd.offset); err != nil {
		return err
	}
	nd.offset += int64(len(nd.buf))
	return syscall.Fdatasync(int(nd.logf.Fd()))
}

// appendRecord appends a record: kind, length and the message's protobuf
// encoding.
func appendRecord(b []byte, kind byte, m proto.Message) ([]byte, error) {
	start := len(b)
	b = append(b, kind, 0, 0, 0, 0)
	b, err := proto.MarshalOptions{}.MarshalAppend(b, m)
	if err != nil {
		return nil, err
	}
	binary.BigEndian.PutUint32(b[start+1:], uint32(len(b)-start-5))
	return b, nil
}

func (nd *etcdNode) apply(e *pb.Entry) error {
	switch e.GetType() {
	case pb.EntryNormal:
		// Empty entries are the ones a new leader appends.
		if data := e.GetData(); len(data) >= 8 {
			nd.count.Add(1)
			id := binary.BigEndian.Uint64(data)
			if id>>56 == nd.id {
				nd.waitMu.Lock()
				ch, ok := nd.waiters[id]
				delete(nd.waiters, id)
				nd.waitMu.Unlock()
				if ok {
					close(ch)
				}
			}
		}
	case pb.EntryConfChange:
		var cc pb.ConfChange
		if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
			return err
		}
		nd.confState = nd.node.ApplyConfChange(&cc)
	case pb.EntryConfChangeV2:
		var cc pb.ConfChangeV2
		if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
			return err
		}
		nd.confState = nd.node.ApplyConfChange(&cc)
	}
	nd.applied = e.GetIndex()
	return nil
}

// maybeCompact snapshots the state machine (its count) and drops all but
// the last etcdCatchUpEntries entries from memory, every
// etcdSnapshotEvery applied entries. The log file keeps everything: the
// harness never restarts from it, and a real WAL would release its old
// segments, which costs no fsync here.
func (nd *etcdNode) maybeCompact() error {
	if nd.applied < nd.snapIndex+etcdSnapshotEvery {
		return nil
	}
	data := binary.BigEndian.AppendUint64(nil, nd.count.Load())
	if _, err := nd.storage.CreateSnapshot(nd.applied, nd.confState, data); err != nil {
		return err
	}
	nd.snapIndex = nd.applied
	if nd.applied > etcdCatchUpEntries {
		if err := nd.storage.Compact(nd.applied - etcdCatchUpEntries); err != nil && !errors.Is(err, raft.ErrCompacted) {
			return err
		}
	}
	return nil
}

// send marshals m (inside the Ready loop, as raft requires: the entries
// it refers to must not change meanwhile) and queues it for its peer.
func (nd *etcdNode) send(m *pb.Message) error {
	p, ok := nd.peers[m.GetTo()]
	if !ok {
		return nil
	}
	frame, err := appendRecord(nil, 0, m)
	if err != nil {
		return err
	}
	snap := m.GetType() == pb.MsgSnap
	select {
	case p.queue <- etcdFrame{data: frame[1:], snapshot: snap}:
	default:
		nd.node.ReportUnreachable(p.id)
		if snap {
			nd.node.ReportSnapshot(p.id, raft.SnapshotFailure)
		}
	}
	return nil
}

func (nd *etcdNode) accept() {
	for {
		conn, err := nd.ln.Accept()
		if err != nil {
			return
		}
		nd.connsMu.Lock()
		nd.conns = append(nd.conns, conn)
		nd.connsMu.Unlock()
		go nd.receive(conn)
	}
}

// receive reads a peer's frames and steps them into the node.
func (nd *etcdNode) receive(conn net.Conn) {
	defer conn.Close()
	r := bufio.NewReaderSize(conn, 64<<10)
	var head [4]byte
	for {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return
		}
		b := make([]byte, binary.BigEndian.Uint32(head[:]))
		if _, err := io.ReadFull(r, b); err != nil {
			return
		}
		m := new(pb.Message)
		if err := proto.Unmarshal(b, m); err != nil {
			return
		}
		if err := nd.node.Step(context.Background(), m); err != nil && !errors.Is(err, raft.ErrStopped) {
			return
		}
	}
}

func (nd *etcdNode) shutdown() error {
	select {
	case <-nd.stop:
		return nil
	default:
	}
	close(nd.stop)
	if nd.node != nil {
		<-nd.done
	}
	if nd.ln != nil {
		_ = nd.ln.Close()
	}
	for _, p := range nd.peers {
		p.close()
	}
	nd.connsMu.Lock()
	for _, conn := range nd.conns {
		_ = conn.Close()
	}
	nd.connsMu.Unlock()
	if nd.logf != nil {
		return nd.logf.Close()
	}
	return nil
}

type etcdFrame struct {
	data     []byte // length-prefixed message
	snapshot bool
}

// etcdPeer is the sending side of one connection to a peer: one goroutine
// writes whatever frames queued up while it wrote the last ones, then
// flushes, so that busy traffic is batched into few writes.
type etcdPeer struct {
	id    uint64
	addr  string
	from  *etcdNode
	queue chan etcdFrame
	quit  chan struct{}
	done  chan struct{}
}

func newEtcdPeer(from *etcdNode, id uint64, addr string) *etcdPeer {
	p := &etcdPeer{id: id, addr: addr, from: from, queue: make(chan etcdFrame, etcdSendBuffer),
		quit: make(chan struct{}), done: make(chan struct{})}
	go p.loop()
	return p
}

func (p *etcdPeer) loop() {
	defer close(p.done)
	var conn net.Conn
	var w *bufio.Writer
	defer func() {
		if conn != nil {
			_ = conn.Close()
		}
	}()
	for {
		var f etcdFrame
		select {
		case f = <-p.queue:
		case <-p.quit:
			return
		}
		if conn == nil {
			c, err := net.DialTimeout("tcp", p.addr, time.Second)
			if err != nil {
				p.failed(f)
				continue
			}
			conn, w = c, bufio.NewWriterSize(c, 64<<10)
		}
		var snaps []etcdFrame
		err := p.write(w, f, &snaps)
		for err == nil && len(p.queue) > 0 {
			err = p.write(w, <-p.queue, &snaps)
		}
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			_ = conn.Close()
			conn = nil
			p.failed(etcdFrame{})
			for _, s := range snaps {
				p.failed(s)
			}
			continue
		}
		for range snaps {
			p.from.node.ReportSnapshot(p.id, raft.SnapshotFinish)
		}
	}
}

func (p *etcdPeer) write(w *bufio.Writer, f etcdFrame, snaps *[]etcdFrame) error {
	if f.snapshot {
		*snaps = append(*snaps, f)
	}
	_, err := w.Write(f.data)
	return err
}

// failed tells raft a frame did not reach the peer, so that it probes
// the peer again instead of waiting for answers that cannot come.
func (p *etcdPeer) failed(f etcdFrame) {
	p.from.node.ReportUnreachable(p.id)
	if f.snapshot {
		p.from.node.ReportSnapshot(p.id, raft.SnapshotFailure)
	}
}

func (p *etcdPeer) close() {
	close(p.quit)
	<-p.done
}
