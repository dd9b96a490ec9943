package raftserver

import (
	"math/rand/v2"
	"time"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/meta"
	"github.com/rago-raft/rago/raftserver/core"
	"github.com/rago-raft/rago/segment"
	"github.com/rago-raft/rago/snapshot"
)

// The ports of a server's host: its storage and the node's services. The
// node's implementations are below; a simulation brings its own. Every
// port is called on the host's goroutine only.

// logPort is a server's log. Writes are asynchronous: durability comes
// back to the host as wal.Written (or wal.OutOfSequence, wal.WriteFailed).
// Reads (core.LogReader) see every write as soon as it is issued.
type logPort interface {
	core.LogReader
	// append writes entries from ents[0].Index, overwriting a suffix from
	// there.
	append(ents []core.Entry) error
	// compact drops the entries up to through, which the snapshot there
	// covers.
	compact(through uint64) error
	// reset makes the log hold nothing after the snapshot at index (term).
	reset(index, term uint64) error
	// setSnapshot records the server's newest durable snapshot.
	setSnapshot(index, term uint64)
	// retry sends writes held back by backpressure (after a Written).
	retry() error
	// resend writes again from index from after the writer dropped a write
	// that left a gap; read gives entries the log may not hold yet.
	resend(from uint64, read func(lo, hi uint64) ([]core.Entry, error)) error
	// continues reports whether the log continues the snapshot at index
	// with term.
	continues(index, term uint64) (bool, error)
	// floor is the index through which the log was ever compacted.
	floor() (uint64, error)
}

// statePort is a server's durable state besides its log and snapshots: term
// and vote, the last applied index, the mark of a lost log, and the
// members its node's directory records.
type statePort interface {
	load() (term uint64, vote ServerID, applied uint64, err error)
	// saveVote makes term and vote durable (synced) before it returns.
	saveVote(term uint64, vote ServerID) error
	// saveApplied records the last applied index, unsynced: a hint.
	saveApplied(index uint64) error
	lost() (index, term uint64, err error)
	setLost(index, term uint64) error
	clearLost() error
	saveMembers(voters []ServerID) error
}

// snapshotPort is the node's snapshot store, and the writer that makes a
// machine's snapshot durable off the server's goroutine: it reports to the
// notify process with snapshot.Written or snapshot.WriteFailed.
type snapshotPort struct {
	store  *snapshot.Store
	submit func(snapshot.Write) error
}

// nodeServices are what a server uses of its node besides storage.
type nodeServices interface {
	newMachine(MachineSpec) (Machine, error)
	// recordLeader publishes what the server knows of its cluster's
	// leadership on the node's leaderboard.
	recordLeader(cluster string, leader ServerID, voters []ServerID, term uint64)
	// watchNode and unwatchNode have the failure detector report on node
	// to the server (failuredetector.Suspected and Up).
	watchNode(server actor.Ref, node string) error
	unwatchNode(server actor.Ref, node string)
	// electionDelay paces the elections of the node's servers: the delay to
	// use for an election timer that asked for d.
	electionDelay(now time.Time, d time.Duration) time.Duration
	// refusedPeerMessage counts and logs a message the server dropped
	// (see peerInput): from is its claimed sender, src the node it came
	// from, why the reason.
	refusedPeerMessage(server, from ServerID, src string, msg actor.Message, why string)
}

// hostConfig is what a host takes of its node's configuration. A node
// makes one (System.hostConf) that all its hosts share by pointer, and
// nobody changes it afterwards: a copy per host cost each server 368 bytes,
// twice (its field, and the closure of newSessions).
type hostConfig struct {
	raft              core.Config // without the per-server fields
	sessionTTLEntries uint64
	maxSessions       int
	snapshots         SnapshotPolicy
	machineTick       time.Duration
	// seed draws the seed of a member's Raft jitter at each start.
	seed func() uint64
}

func (c SystemConfig) host() hostConfig {
	return hostConfig{
		raft:              c.Raft.core(),
		sessionTTLEntries: c.SessionTTLEntries,
		maxSessions:       c.MaxSessions,
		snapshots:         c.Snapshots,
		machineTick:       c.MachineTick,
		seed:              rand.Uint64,
	}
}

// newSessions is an empty session table under the configured limits.
func (c *hostConfig) newSessions() *sessionTable {
	return newSessionTable(c.sessionTTLEntries, c.maxSessions)
}

// openLog registers a server with the node's WAL and opens its log.
func (s *System) openLog(uid string, server actor.Ref) (logPort, error) {
	w, err := s.currentWAL().Register(uid, server)
	if err != nil {
		return nil, err
	}
	return openLogStore(uid, w, segment.NewLog(uid, s.segments, w.Mem), s.segments)
}

// metaState is the statePort of a server over the node's meta store.
type metaState struct {
	sys *System
	uid string
}

func (m metaState) load() (uint64, ServerID, uint64, error) {
	term, vote, applied, err := m.sys.meta.Get(m.uid)
	return term, ServerID(vote), applied, err
}

func (m metaState) saveVote(term uint64, vote ServerID) error {
	return m.sys.meta.Put(m.uid, term, meta.ServerID(vote))
}

func (m metaState) saveApplied(index uint64) error { return m.sys.meta.SetLastApplied(m.uid, index) }
func (m metaState) lost() (uint64, uint64, error)  { return m.sys.meta.Lost(m.uid) }
func (m metaState) setLost(index, term uint64) error {
	return m.sys.meta.SetLost(m.uid, index, term)
}
func (m metaState) clearLost() error { return m.sys.meta.ClearLost(m.uid) }

func (m metaState) saveMembers(voters []ServerID) error {
	members := make([]meta.ServerID, 0, len(voters))
	for _, id := range voters {
		members = append(members, meta.ServerID(id))
	}
	return m.sys.directoryMembers(m.uid, members)
}

// The System is its servers' nodeServices.

func (s *System) recordLeader(cluster string, leader ServerID, voters []ServerID, term uint64) {
	s.board.Record(cluster, leader, voters, term)
}

func (s *System) watchNode(server actor.Ref, node string) error { return s.fd.Watch(server, node) }
func (s *System) unwatchNode(server actor.Ref, node string)     { _ = s.fd.Unwatch(server, node) }

func (s *System) electionDelay(now time.Time, d time.Duration) time.Duration {
	return s.pacer.delay(now, d)
}
