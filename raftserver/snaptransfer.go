package raftserver

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/rago-raft/rago/raftserver/core"
	"github.com/rago-raft/rago/snapshot"
)

// Messages of a snapshot transfer between two servers: the chunks of the
// snapshot file, sent by the leader with its term, and the follower's
// acknowledgements (see snapshot.Sender and snapshot.Receiver).
type (
	snapChunk struct {
		From        ServerID
		Incarnation uint64 // the sender's
		Term        uint64
		Chunk       snapshot.Chunk
	}
	snapAck struct {
		From ServerID
		Ack  snapshot.ChunkAck
	}
	// snapTickMsg drives the transfers' timeouts while any is running.
	snapTickMsg struct{}
	snapDueMsg  struct{}
)

// snapTickEvery is how often running transfers are given the time: half
// the sender's default retry time.
const snapTickEvery = time.Second

// sendSnapshot carries out core.SendSnapshot: stream our snapshot to a
// follower, replacing a transfer to it in progress. The core names the
// snapshot it knows; a newer one received meanwhile is as good.
func (s *server) sendSnapshot(a core.SendSnapshot) {
	if old := s.snap.senders[a.To]; old != nil {
		_ = old.Close()
		delete(s.snap.senders, a.To)
	}
	info, ok := s.snapshotOnDisk(^uint64(0))
	if !ok || info.Index < a.Msg.Snapshot.Index {
		s.logger.Error("snapshot to send is missing", "to", a.To.String(), "index", a.Msg.Snapshot.Index)
		return
	}
	snd, err := snapshot.NewSender(s.snaps.store, info, snapshot.SenderConfig{})
	if err != nil {
		// The core sends it again later; meanwhile a new snapshot of ours
		// replaces a file that went missing or bad.
		s.logger.Error("cannot send snapshot", "to", a.To.String(), "snapshot", info.String(), "err", err)
		s.snap.force = true
		return
	}
	chunks, err := snd.Start(s.env.now())
	if err != nil {
		_ = snd.Close()
		return
	}
	if s.snap.senders == nil {
		s.snap.senders = map[ServerID]*snapshot.Sender{}
		s.snap.sendStarted = map[ServerID]time.Time{}
	}
	s.snap.senders[a.To] = snd
	s.snap.sendStarted[a.To] = s.env.now()
	s.sendChunks(a.To, chunks)
	s.armSnapTick()
}

func (s *server) sendChunks(to ServerID, chunks []snapshot.Chunk) {
	term := s.raft.Term()
	for _, c := range chunks {
		_ = s.env.send(Ref(to), &snapChunk{From: s.self, Incarnation: s.incarnation, Term: term, Chunk: c})
	}
}

// chunkAcked feeds a follower's ack to its transfer.
func (s *server) chunkAcked(m *snapAck) {
	snd := s.snap.senders[m.From]
	if snd == nil {
		return
	}
	chunks, err := snd.HandleAck(m.Ack, s.env.now())
	s.sendChunks(m.From, chunks)
	s.transferProgress(m.From, snd, err)
}

// transferProgress ends a finished transfer. A follower that found our
// file corrupt makes us check it, and take a new snapshot if it fails.
func (s *server) transferProgress(to ServerID, snd *snapshot.Sender, err error) {
	if !snd.Finished() {
		return
	}
	delete(s.snap.senders, to)
	defer delete(s.snap.sendStarted, to)
	_ = snd.Close()
	var rej *snapshot.RejectedError
	switch {
	case snd.Done():
		s.met.snapsSent.Add(1)
		s.met.snapBytesSent.Add(uint64(snd.Info().Size))
		s.met.snapSendLatency.Observe(s.env.now().Sub(s.snap.sendStarted[to]))
		s.logger.Info("snapshot sent", "to", to.String(), "snapshot", snd.Info().String())
	case errors.As(err, &rej) && rej.Reason == snapshot.RejectCorrupt:
		if verr := s.snaps.store.Verify(snd.Info()); verr != nil {
			s.logger.Error("our snapshot is corrupt; taking a new one at the next release cursor", "err", verr)
			s.snap.force = true
		}
	case err != nil:
		// The core starts a new transfer later (the follower resumes).
		s.logger.Warn("snapshot transfer ended", "to", to.String(), "err", err)
	}
}

// chunkReceived is the follower's side: take the chunk if it comes from a
// leader of at least our term, answer it, and once the whole snapshot is
// durable, tell the core.
func (s *server) chunkReceived(m *snapChunk) {
	if m.Term < s.raft.Term() {
		return // a deposed leader; its other messages tell it so
	}
	res := s.snap.receiver.Receive(m.Chunk, s.env.now())
	if res.Reply {
		_ = s.env.send(Ref(m.From), &snapAck{From: s.self, Ack: res.Ack})
	}
	if res.Err != nil {
		s.logger.Warn("snapshot transfer failed", "from", m.From.String(), "err", res.Err)
	}
	s.armSnapTick()
	if !res.Installed {
		if res.Reply && (res.Ack.Status == snapshot.AckInstalled ||
			res.Ack.Status == snapshot.AckRejected && res.Ack.Reason == snapshot.RejectStale) {
			s.alreadyHeld(m)
		}
		return
	}
	desc, err := s.describeSnapshot(res.Info)
	if err != nil {
		s.logger.Error("received snapshot unreadable", "snapshot", res.Info.String(), "err", err)
		return
	}
	s.snap.staged, s.snap.stagedDesc = res.Info, desc
	s.step(core.Receive{From: m.From, Incarnation: m.Incarnation, Msg: &core.InstallSnapshot{Term: m.Term, Snapshot: desc}})
}

// alreadyHeld: a leader sent a snapshot this server holds already, or one
// older than a snapshot it received and holds staged (the receiver answered
// at once). The core hears of the snapshot held: an earlier InstallSnapshot
// of it may have been put off (writes in flight) and then dropped (a new
// term), and the leader, which counts its transfer as done or refused,
// waits for the follower's answer. A staged snapshot holds only committed
// entries, so it is as good from any leader.
func (s *server) alreadyHeld(m *snapChunk) {
	var desc core.Snapshot
	switch c := m.Chunk; {
	case s.snap.staged.Index >= c.Index && s.snap.staged.Index > s.snap.desc.Index:
		desc = s.snap.stagedDesc
	case s.snap.info.Index == c.Index && s.snap.info.Term == c.Term:
		desc = s.snap.desc
	default:
		return
	}
	s.step(core.Receive{From: m.From, Incarnation: m.Incarnation, Msg: &core.InstallSnapshot{Term: m.Term, Snapshot: desc.Clone()}})
}

// describeSnapshot reads a snapshot's description from its meta.
func (s *server) describeSnapshot(info snapshot.Info) (core.Snapshot, error) {
	rd, err := s.snaps.store.Open(info)
	if err != nil {
		return core.Snapshot{}, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	defer rd.Close()
	desc, _, err := decodeSnapMeta(info, rd.Meta(), s.conf.sessionTTLEntries, s.conf.maxSessions)
	return desc, err
}

// snapTick gives running transfers the time, and re-arms itself while any
// runs.
func (s *server) snapTick() {
	s.snap.tickArmed = false
	now := s.env.now()
	// In a fixed order, so that what a host sends does not depend on map
	// order (a simulation replays it).
	for _, to := range slices.SortedFunc(maps.Keys(s.snap.senders), ServerID.Compare) {
		snd := s.snap.senders[to]
		chunks, err := snd.Tick(now)
		s.sendChunks(to, chunks)
		s.transferProgress(to, snd, err)
	}
	if s.snap.receiver != nil {
		s.snap.receiver.Tick(now)
	}
	s.armSnapTick()
}

func (s *server) armSnapTick() {
	active := len(s.snap.senders) > 0
	if s.snap.receiver != nil {
		_, _, receiving := s.snap.receiver.Active()
		active = active || receiving
	}
	if active && !s.snap.tickArmed {
		s.snap.tickTimer = s.env.after(snapTickEvery, snapTickMsg{})
		s.snap.tickArmed = true
	}
}

// stopTransfers ends the transfers this server sends (it no longer leads,
// or it stops); followers keep what they received for a resume.
func (s *server) stopTransfers() {
	for to, snd := range s.snap.senders {
		_ = snd.Close()
		delete(s.snap.senders, to)
	}
}
