package raftserver

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/rago-raft/rago/internal/wire"
	"github.com/rago-raft/rago/raftserver/core"
	"github.com/rago-raft/rago/snapshot"
)

// SnapshotPolicy decides when a server snapshots its machine. A machine
// that implements Snapshotter says where it may be snapshotted by
// recording Effects.ReleaseCursor(ctx.Index); the server snapshots at
// such a command when, since its last snapshot, at least Entries entries
// or Bytes bytes of commands were applied, the commands applied add up to
// at least LogRatio times the last snapshot's size, and at least
// MinInterval has passed. Every member decides for itself (they snapshot
// at different indexes, which is fine: each snapshot is the state at its
// own index).
//
// LogRatio bounds the cost of snapshots for large states: with 0.5, a
// state is written at most once per half its size of commands, so
// snapshots at most double the bytes written, and the disk holds at most
// about the state, half of it again as log, and a snapshot being written.
type SnapshotPolicy struct {
	// Entries applied since the last snapshot that make one due. Default
	// 4096.
	Entries uint64
	// Bytes of command data applied since the last snapshot that make one
	// due. Default 64 MiB.
	Bytes int64
	// MinInterval between two snapshots of one server, so a large state is
	// not written over and over under heavy load. Default 1s.
	MinInterval time.Duration
	// LogRatio: command bytes applied since the last snapshot, as a
	// fraction of that snapshot's size, below which no snapshot is due.
	// Default 0.5; negative turns the condition off.
	LogRatio float64
	// SkipOnStop: at an orderly stop, a server whose log holds at least
	// Entries entries after its snapshot snapshots its machine before it
	// exits (if the last applied command released the log), so that its
	// next start replays nothing. SkipOnStop makes stops faster instead.
	SkipOnStop bool
}

func (p SnapshotPolicy) withDefaults() SnapshotPolicy {
	if p.Entries == 0 {
		p.Entries = 4096
	}
	if p.Bytes == 0 {
		p.Bytes = 64 << 20
	}
	if p.MinInterval == 0 {
		p.MinInterval = time.Second
	}
	if p.LogRatio == 0 {
		p.LogRatio = 0.5
	}
	return p
}

// due reports whether, entries and bytes of commands after the last
// snapshot, whose data was lastSize bytes, a new one is due (MinInterval
// aside).
func (p SnapshotPolicy) due(entries uint64, bytes, lastSize int64) bool {
	return (entries >= p.Entries || bytes >= p.Bytes) && float64(bytes) >= p.LogRatio*float64(lastSize)
}

// The meta blob of a snapshot file (wire format): what the server needs
// besides the machine's bytes to continue from the snapshot.
//
//	u8 version (1) | bytes members (core.Membership.AppendBinary) |
//	uvarint machine version | sessions (sessionTable.appendBinary)
const snapMetaVersion = 1

func encodeSnapMeta(desc core.Snapshot, sessions *sessionTable) []byte {
	b := []byte{snapMetaVersion}
	b = wire.AppendBytes(b, desc.Members.AppendBinary(nil))
	b = wire.AppendUvarint(b, desc.MachineVersion)
	return sessions.appendBinary(b)
}

// decodeSnapMeta reads a snapshot's meta blob; info gives index and term.
func decodeSnapMeta(info snapshot.Info, meta []byte, ttl uint64, maxSessions int) (core.Snapshot, *sessionTable, error) {
	r := wire.NewReader(meta)
	if v := r.Uint8(); v != snapMetaVersion && r.Err() == nil {
		r.Fail("unknown snapshot meta version %d", v)
	}
	mb := r.Bytes()
	version := r.Uvarint()
	sessions := readSessions(r, ttl, maxSessions)
	if err := r.Done(); err != nil {
		return core.Snapshot{}, nil, fmt.Errorf("%w: snapshot %s meta: %w", ErrStorage, info, err)
	}
	members, err := core.DecodeMembership(mb)
	if err != nil {
		return core.Snapshot{}, nil, fmt.Errorf("%w: snapshot %s members: %w", ErrStorage, info, err)
	}
	return core.Snapshot{Index: info.Index, Term: info.Term, Members: members, MachineVersion: version}, sessions, nil
}

// snapState is a server's snapshot bookkeeping.
type snapState struct {
	info snapshot.Info // the newest snapshot the core knows (zero if none)
	desc core.Snapshot
	// taking is a snapshot handed to the writer, not yet durable.
	taking *core.Snapshot
	// Counters of the policy, since the last snapshot was taken.
	entries uint64
	bytes   int64
	at      time.Time
	// releaseAt is the index of the entry being applied if the machine
	// released the log up to it; released is the last such entry.
	releaseAt uint64
	released  logPos
	// force makes the next release cursor take a snapshot whatever the
	// policy says (the one a transfer sent turned out corrupt).
	// (The bools sit together: snapState is in every server's struct.)
	force bool
	// dueArmed: a snapshot is due but for MinInterval; a timer fires when
	// it has passed, so a burst shorter than the interval is snapshotted
	// too (if the state still stands on its own then).
	dueArmed bool

	// staged is the newest snapshot received from a leader: durable and
	// visible in the store, not (yet) restored or adopted.
	staged     snapshot.Info
	stagedDesc core.Snapshot
	receiver   *snapshot.Receiver
	senders    map[ServerID]*snapshot.Sender
	// sendStarted is when each transfer in senders started (metrics).
	sendStarted map[ServerID]time.Time
	tickArmed   bool
	tickTimer   timerID
}

// snapshotter returns the machine as a Snapshotter, if it is one.
func (s *server) snapshotter() (Snapshotter, bool) { return capability[Snapshotter](s.mh.machine) }

// restoreMachine builds a fresh machine and restores it from the snapshot
// info, returning its description and session table.
func (s *server) restoreMachine(info snapshot.Info) (Machine, core.Snapshot, *sessionTable, error) {
	rd, err := s.snaps.store.Open(info)
	if err != nil {
		return nil, core.Snapshot{}, nil, fmt.Errorf("%w: open snapshot %s: %w", ErrStorage, info, err)
	}
	defer rd.Close()
	desc, sessions, err := decodeSnapMeta(info, rd.Meta(), s.conf.sessionTTLEntries, s.conf.maxSessions)
	if err != nil {
		return nil, core.Snapshot{}, nil, err
	}
	if desc.MachineVersion > s.mh.supportedVersion() {
		return nil, core.Snapshot{}, nil, fmt.Errorf("%w: snapshot %s holds machine version %d, this code supports %d: upgrade it",
			ErrMachine, info, desc.MachineVersion, s.mh.supportedVersion())
	}
	m, err := s.mh.newMachine()
	if err != nil {
		return nil, core.Snapshot{}, nil, err
	}
	sn, ok := capability[Snapshotter](m)
	if !ok {
		return nil, core.Snapshot{}, nil, fmt.Errorf("%w: machine %q cannot restore snapshot %s: it is no Snapshotter", ErrMachine, s.cfg.Machine.Kind, info)
	}
	if err := restoreSafely(sn, rd); err != nil {
		return nil, core.Snapshot{}, nil, fmt.Errorf("%w: restore snapshot %s: %w", ErrMachine, info, err)
	}
	// The machine must have read everything, and the trailer verified.
	if n, err := io.Copy(io.Discard, rd); err != nil || n > 0 {
		return nil, core.Snapshot{}, nil, fmt.Errorf("%w: restore snapshot %s: %d bytes left unread (%v)", ErrMachine, info, n, err)
	}
	return m, desc, sessions, nil
}

func restoreSafely(sn Snapshotter, r io.Reader) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("Restore panicked: %v", p)
		}
	}()
	return sn.Restore(r)
}

// restoreOnDisk restores a machine from the newest durable snapshot at or
// below upTo, if there is one (machineHost.restore).
func (s *server) restoreOnDisk(upTo uint64) (Machine, core.Snapshot, *sessionTable, bool, error) {
	info, ok := s.snapshotOnDisk(upTo)
	if !ok {
		return nil, core.Snapshot{}, nil, false, nil
	}
	m, desc, sessions, err := s.restoreMachine(info)
	return m, desc, sessions, true, err
}

// snapshotOnDisk returns the newest durable snapshot of this server at or
// below index limit, if any. It is usually the one the core knows, but the
// store keeps only the newest snapshot, and a newer one (ours, not yet
// reported Written, or one received from a leader) may have replaced it.
func (s *server) snapshotOnDisk(limit uint64) (snapshot.Info, bool) {
	list, err := s.snaps.store.List(s.uid)
	if err != nil {
		s.logger.Warn("cannot list snapshots", "err", err)
	}
	for _, in := range list { // newest first
		if in.Index > limit {
			continue
		}
		if in.Index == s.snap.info.Index && in.Term == s.snap.info.Term {
			return s.snap.info, true
		}
		return in, true
	}
	return snapshot.Info{}, false
}

// appliedMembers returns the members in effect at the applied index, as a
// snapshot records them (the initial members until a config entry).
func (s *server) appliedMembers() core.Membership {
	if len(s.mh.members.Voters) > 0 {
		return s.mh.members.Clone()
	}
	return s.initial.Clone()
}

// counted records an applied entry for the snapshot policy and, if the
// machine released the log up to it and a snapshot is due, takes one.
func (s *server) counted(e core.Entry) {
	s.snap.entries++
	s.snap.bytes += int64(len(e.Data))
	if s.mh.releaseAt != e.Index {
		// A new leader's no-op changes neither the machine nor the
		// members: where the entry before it released the log, the log is
		// released through the no-op too. Otherwise a backup, or a
		// snapshot, right after a leader change would wait for the next
		// command.
		if e.Type == core.EntryNoop && e.Index > 1 && s.snap.released.Index == e.Index-1 {
			s.snap.released = logPos{Index: e.Index, Term: e.Term}
			s.maybeSnapshot()
		}
		return
	}
	s.mh.releaseAt = 0
	s.snap.released = logPos{Index: e.Index, Term: e.Term}
	s.maybeSnapshot()
}

// logPos is where an entry lies in the log: all a server keeps of the
// last entry that released the log (an entry, with its data, is larger, and
// snapState is in every server's struct).
type logPos struct{ Index, Term uint64 }

// maybeSnapshot takes a snapshot at the last released entry if it is the
// last applied one and the policy says one is due.
func (s *server) maybeSnapshot() {
	e := s.snap.released
	p := s.conf.snapshots
	due := s.snap.force || p.due(s.snap.entries, s.snap.bytes, s.snap.info.DataSize)
	if !due || s.snap.taking != nil || e.Index != s.applied || e.Index <= s.snap.desc.Index {
		return
	}
	if wait := p.MinInterval - s.env.now().Sub(s.snap.at); wait > 0 {
		if !s.snap.dueArmed {
			s.snap.dueArmed = true
			s.env.after(wait, snapDueMsg{})
		}
		return
	}
	s.takeSnapshot(e)
}

// snapDue: the minimum interval of a due snapshot has passed.
func (s *server) snapDue() {
	s.snap.dueArmed = false
	s.maybeSnapshot()
}

// viewAt asks the machine for a view of its state, which is the state
// after entry e, and describes it. A panic or a missing source is an error.
func (s *server) viewAt(sn Snapshotter, e logPos) (src snapshot.Source, desc core.Snapshot, err error) {
	func() {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("Snapshot panicked: %v", p)
			}
		}()
		src, err = sn.Snapshot()
	}()
	if err == nil && src == nil {
		err = errors.New("Snapshot returned no source")
	}
	desc = core.Snapshot{Index: e.Index, Term: e.Term, Members: s.appliedMembers(), MachineVersion: s.mh.version}
	return src, desc, err
}

// takeSnapshot hands the machine's state after e to the snapshot writer.
func (s *server) takeSnapshot(e logPos) {
	sn, ok := s.snapshotter()
	if !ok {
		return
	}
	src, desc, err := s.viewAt(sn, e)
	if err != nil {
		s.logger.Error("machine did not snapshot", "index", e.Index, "err", err)
		return
	}
	err = s.snaps.submit(snapshot.Write{UID: s.uid, Index: e.Index, Term: e.Term,
		Meta: encodeSnapMeta(desc, s.mh.sessions), Data: src, Notify: s.env.self()})
	if err != nil {
		src.Release()
		s.logger.Warn("snapshot not submitted", "index", e.Index, "err", err)
		return
	}
	s.snap.taking = &desc
	s.snap.entries, s.snap.bytes, s.snap.at, s.snap.force = 0, 0, s.env.now(), false
}

// snapshotWritten: a snapshot of ours is durable. The core learns of it and
// asks, in turn, for the log below it to go (Compact).
func (s *server) snapshotWritten(info snapshot.Info) {
	t := s.snap.taking
	if t == nil || t.Index != info.Index {
		return
	}
	s.snap.taking = nil
	if info.Index > s.snap.desc.Index { // else an installed snapshot overtook it
		s.met.snapsTaken.Add(1)
		s.adopt(info, *t)
	}
	// Entries applied while it was written may have made the next one due,
	// and nothing else would ask on an idle member: its last entries would
	// stay in the log until the next command.
	s.maybeSnapshot()
}

// adopt makes a durable snapshot at or below the applied index the
// server's and tells the core.
func (s *server) adopt(info snapshot.Info, desc core.Snapshot) {
	s.snap.info, s.snap.desc = info, desc.Clone()
	if s.snap.staged.Index <= info.Index {
		s.snap.staged = snapshot.Info{}
	}
	s.log.setSnapshot(desc.Index, desc.Term)
	s.mh.forgetPoisonedThrough(desc.Index)
	s.step(core.SnapshotTaken{Snapshot: desc})
}

func (s *server) snapshotFailed(m snapshot.WriteFailed) {
	if t := s.snap.taking; t != nil && t.Index == m.Index {
		s.snap.taking = nil
	}
	if errors.Is(m.Err, snapshot.ErrStale) || errors.Is(m.Err, snapshot.ErrSuperseded) {
		s.logger.Debug("snapshot not written", "index", m.Index, "err", m.Err)
		return
	}
	s.logger.Warn("snapshot not written; the log stays until the next one", "index", m.Index, "err", m.Err)
}

// restoreSnapshot carries out core.RestoreSnapshot: the staged snapshot
// becomes the server's, the machine is restored from it, and the log is
// reset to hold nothing after it.
func (s *server) restoreSnapshot(want core.Snapshot) error {
	started := s.env.now()
	info := s.snap.staged
	if info.Index != want.Index || info.Term != want.Term {
		return fmt.Errorf("%w: restore snapshot (%d, term %d), staged is (%d, term %d)",
			ErrStorage, want.Index, want.Term, info.Index, info.Term)
	}
	m, desc, sessions, err := s.restoreMachine(info)
	if err != nil {
		return err
	}
	if err := s.log.reset(desc.Index, desc.Term); err != nil {
		return err
	}
	s.mh.reset(m, desc, sessions)
	s.applied = desc.Index
	s.mh.poisoned = nil
	s.snap.info, s.snap.desc, s.snap.staged = info, desc, snapshot.Info{}
	s.snap.entries, s.snap.bytes, s.snap.at = 0, 0, s.env.now()
	s.met.snapsInstalled.Add(1)
	s.met.snapBytesInstalled.Add(uint64(info.Size))
	s.met.snapInstallLatency.Observe(s.env.now().Sub(started))
	s.met.appliedIndex.Store(s.applied)
	s.logger.Info("installed snapshot", "index", desc.Index, "term", desc.Term, "bytes", info.Size)
	return nil
}

// maybeAdoptStaged makes a received snapshot that the core did not install
// (this member held the entries already) the server's own once the
// machine has applied that far: the store keeps only the newest snapshot,
// so it has replaced ours on disk.
func (s *server) maybeAdoptStaged() {
	st := s.snap.staged
	if st.Index == 0 || st.Index <= s.snap.desc.Index || s.applied < st.Index || s.raft == nil {
		return
	}
	s.adopt(st, s.snap.stagedDesc)
}

// snapshotOnStop writes a snapshot at the applied index on the server's
// goroutine as it stops (an orderly stop only), so that the next start
// restores it instead of replaying a long log; see SnapshotPolicy.
func (s *server) snapshotOnStop() {
	p := s.conf.snapshots
	e := s.snap.released
	sn, ok := s.snapshotter()
	if p.SkipOnStop || !ok || e.Index != s.applied || e.Index < s.snap.desc.Index+p.Entries {
		return
	}
	start := s.env.now()
	src, desc, err := s.viewAt(sn, e)
	if err != nil {
		s.logger.Warn("no snapshot at stop", "err", err)
		return
	}
	defer src.Release()
	pend, err := s.snaps.store.Begin(s.uid, e.Index, e.Term, encodeSnapMeta(desc, s.mh.sessions))
	if err != nil {
		s.logger.Debug("no snapshot at stop", "err", err)
		return
	}
	if _, err := src.WriteTo(pend); err != nil {
		pend.Abort()
		s.logger.Warn("no snapshot at stop", "err", err)
		return
	}
	info, err := pend.Commit()
	if err != nil {
		s.logger.Warn("no snapshot at stop", "err", err)
		return
	}
	s.logger.Info("snapshot at stop", "index", info.Index, "bytes", info.Size, "took", s.env.now().Sub(start))
}
