package raftserver

import (
	"fmt"
	"maps"
	"slices"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/internal/wire"
	"github.com/rago-raft/rago/raftserver/core"
	"github.com/rago-raft/rago/snapshot"
)

// Messages between servers, clients and systems. Each is registered with
// actor so it can cross nodes; tags 100-149 belong to this package and are
// wire format, as are the field orders in the codecs below.

// peerMsg carries a Raft message between members, with its sender (actor
// messages carry none).
type peerMsg struct {
	From ServerID
	// Incarnation is the sender's (core.Config.Incarnation).
	Incarnation uint64
	Msg         core.Message
}

// commandReq is a client command, synchronous (answered with a
// commandResult through the call) or pipelined (answered by an Applied or
// Rejected sent to Notify).
type commandReq struct {
	Data        []byte
	Pipeline    bool
	Notify      actor.Ref
	Correlation uint64
	// A session command (see Session) carries its session's id, its
	// sequence number and the highest sequence number whose reply the
	// client no longer needs.
	Session   bool
	Client    uint64
	Seq       uint64
	Responded uint64
	// userCommand, if not nil, is Data already encoded as a user command
	// and framed as a log entry (frameUserCommand) by a sender in this
	// process; Data is part of it. It does not cross the wire.
	userCommand []byte
}

type commandResult struct {
	Reply  []byte
	Leader ServerID
	Err    remoteError
}

// AppliedResult is the reply to one pipelined command.
type AppliedResult struct {
	Correlation uint64
	Reply       []byte
}

// Applied tells a pipeline's notify process that commands it sent through
// Server were applied, with their replies, in log order. One Applied covers
// every command of one notify process applied in one batch.
type Applied struct {
	Server  ServerID
	Results []AppliedResult
}

// Rejected tells a pipeline's notify process that a command was not
// applied (ErrNotLeader with Leader set, ErrNoLeader), or that its outcome
// is unknown (ErrLeadershipLost).
type Rejected struct {
	Server      ServerID
	Correlation uint64
	Err         error
	Leader      ServerID
}

// queryReq is a query as bytes for the machine's Querier, or, when the
// server is local, a function over the machine.
type queryReq struct {
	Kind  core.QueryKind
	Query []byte
	fn    func(any) (any, error) // local only; never encoded
	// backup asks for a backupView instead (local only; never encoded).
	backup bool
}

type queryResult struct {
	Reply  []byte
	Value  any // result of a local query function; never encoded
	Leader ServerID
	Err    remoteError
}

// Membership operations.
const (
	opAddMember uint8 = iota + 1
	opAddNonVoter
	opRemoveMember
	opTransfer
	// opTriggerElection makes a member without a leader start an election
	// at once instead of waiting for its timer (a new cluster).
	opTriggerElection
)

type memberReq struct {
	Op     uint8
	Member ServerID
	// Incarnation binds an added member to that incarnation of its
	// replica (0: the leader binds the first it hears from).
	Incarnation uint64
}

type memberResult struct {
	Leader ServerID
	Err    remoteError
}

type statusReq struct{}

// ServerStatus is one server's view of itself and its cluster (Overview).
type ServerStatus struct {
	ID          ServerID
	UID         string
	Cluster     string
	MachineKind string
	Role        string
	Term        uint64
	Leader      ServerID
	Commit      uint64
	LastApplied uint64
	FirstIndex  uint64
	LastIndex   uint64
	LastTerm    uint64
	Voters      []ServerID
	NonVoters   []ServerID
	// Machine is what the machine reports about itself (Overviewer).
	Machine map[string]string
	// SnapshotIndex is the index of the server's newest snapshot (0 if
	// none), MachineVersion the machine version it applies commands with,
	// and RecoverTo nonzero while it recovers log entries it lost to a
	// corrupt snapshot (it does not stand for election meanwhile).
	SnapshotIndex  uint64
	MachineVersion uint64
	RecoverTo      uint64
	// StableIndex is the last index known durable in the server's log
	// (entries after it are written but not yet synced).
	StableIndex uint64
	// Progress is a leader's view of each follower (nil unless the server
	// leads): where replication to each stands.
	Progress []Progress
	// Stale: the cluster's configuration binds this server's ID to another
	// incarnation (an earlier replica under the same ID, whose data this
	// one does not have), so it neither votes nor stands for election.
	// Strangers are the members this server heard from under another
	// incarnation than the configuration binds: replicas that lost their
	// data or were created again, whose messages are dropped. Either way,
	// remove the member and add it again (see Rejoin).
	Stale     bool
	Strangers []ServerID
	// Incarnations are the incarnations the configuration binds members
	// to (see core.Membership.Incarnations); Incarnation is this server's,
	// derived from its UID.
	Incarnations map[ServerID]uint64
	Incarnation  uint64
	// RefusedPeerMessages counts the Raft messages, snapshot chunks and
	// acks the server dropped since its process started, because their
	// sender was not on the node they came from or not a member of the
	// cluster as the server knew it (docs/raftserver.md, "Who may send
	// what").
	RefusedPeerMessages uint64
}

// Progress is a leader's view of one follower: the highest index known
// durable there (Match), the next index to send, and the replication
// state ("replicate", "probe" or "snapshot").
type Progress = core.Progress

// ServerConfig describes one server to start.
type ServerConfig struct {
	ID      ServerID
	Cluster string
	Machine MachineSpec
	// InitialMembers are the cluster's voters when it is formed. A server
	// that joins a running cluster (see AddMember) starts with none and
	// waits for the leader to contact it.
	InitialMembers []ServerID
}

// System manager operations.
const (
	sysStart uint8 = iota + 1
	sysStartOrRestart
	sysRestart
	sysStop
	sysDelete
)

type systemReq struct {
	Op     uint8
	Config ServerConfig // sysStart, sysStartOrRestart
	Name   string       // the others
	// preloaded: for sysStart, the UID whose snapshot and term a restore
	// stored (local only; never encoded).
	preloaded string
}

type systemResult struct {
	Err remoteError
}

// checkTermIndex fails r if a message carries terms or an index beyond the
// core's bounds (core.MaxTerm, core.MaxIndex): a snapshot's term and index
// end up in the core's state, which must never hold such values.
func checkTermIndex(r *wire.Reader, what string, term, snapTerm, snapIndex uint64) {
	if term > core.MaxTerm || snapTerm > core.MaxTerm || snapIndex > core.MaxIndex {
		r.FailWith(fmt.Errorf("%s: %w: term %d, snapshot term %d, snapshot index %d", what, core.ErrOutOfRange, term, snapTerm, snapIndex))
	}
}

func appendID(b []byte, id ServerID) []byte {
	b = wire.AppendString(b, id.Name)
	return wire.AppendString(b, id.Node)
}

func readID(r *wire.Reader) ServerID { return ServerID{Name: r.String(), Node: r.String()} }

func appendRef(b []byte, ref actor.Ref) []byte {
	b = wire.AppendString(b, ref.Name)
	return wire.AppendString(b, ref.Node)
}

func readRef(r *wire.Reader) actor.Ref { return actor.Ref{Name: r.String(), Node: r.String()} }

func appendIDs(b []byte, ids []ServerID) []byte {
	b = wire.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		b = appendID(b, id)
	}
	return b
}

func readIDs(r *wire.Reader) []ServerID {
	n := r.Len(2)
	if n == 0 {
		return nil
	}
	ids := make([]ServerID, n)
	for i := range ids {
		ids[i] = readID(r)
	}
	return ids
}

func appendRemote(b []byte, e remoteError) []byte {
	b = append(b, byte(e.Code))
	b = wire.AppendString(b, e.Detail)
	return appendID(b, e.Leader)
}

func readRemote(r *wire.Reader) remoteError {
	return remoteError{Code: errCode(r.Uint8()), Detail: r.String(), Leader: readID(r)}
}

func appendSpec(b []byte, s MachineSpec) []byte {
	b = wire.AppendString(b, s.Kind)
	return wire.AppendBytes(b, s.Config)
}

func readSpec(r *wire.Reader) MachineSpec {
	return MachineSpec{Kind: r.String(), Config: r.BytesCopy()}
}

func appendServerConfig(b []byte, c ServerConfig) []byte {
	b = appendID(b, c.ID)
	b = wire.AppendString(b, c.Cluster)
	b = appendSpec(b, c.Machine)
	return appendIDs(b, c.InitialMembers)
}

func readServerConfig(r *wire.Reader) ServerConfig {
	return ServerConfig{ID: readID(r), Cluster: r.String(), Machine: readSpec(r), InitialMembers: readIDs(r)}
}

// messageVersion is the version of every codec below: a change to one of
// their layouts needs a new version, and a decoder that still reads this
// one.
const messageVersion = 1

// register registers T with a codec built from an encoder and a decoder
// that reads the whole payload.
func register[T any](tag uint16, enc func(b []byte, m T) []byte, dec func(r *wire.Reader) T) {
	actor.MustRegister(actor.Codec[T]{
		Tag: tag, Version: messageVersion,
		Encode: enc,
		Decode: func(v uint8, data []byte) (T, error) {
			if v != messageVersion {
				// actor refuses it before Decode runs; refusing here too
				// keeps this decoder honest on its own.
				var zero T
				return zero, &actor.VersionError{What: fmt.Sprintf("%T", zero), Tag: tag, Got: v,
					Min: messageVersion, Max: messageVersion}
			}
			r := wire.NewReader(data)
			m := dec(r)
			return m, r.Done()
		},
	})
}

func init() {
	register(100, func(b []byte, m *peerMsg) []byte {
		b = appendID(b, m.From)
		b = wire.AppendUvarint(b, m.Incarnation)
		return m.Msg.AppendBinary(b)
	}, func(r *wire.Reader) *peerMsg {
		m := &peerMsg{From: readID(r), Incarnation: r.Uvarint()}
		msg, err := core.DecodeMessage(r.Raw(r.Remaining()))
		if err != nil {
			r.FailWith(fmt.Errorf("raft message: %w", err))
			return m
		}
		m.Msg = msg
		return m
	})
	register(101, func(b []byte, m *commandReq) []byte {
		b = wire.AppendBytes(b, m.Data)
		b = wire.AppendBool(b, m.Pipeline)
		b = appendRef(b, m.Notify)
		b = wire.AppendUvarint(b, m.Correlation)
		b = wire.AppendBool(b, m.Session)
		b = wire.AppendUint64(b, m.Client)
		b = wire.AppendUvarint(b, m.Seq)
		return wire.AppendUvarint(b, m.Responded)
	}, func(r *wire.Reader) *commandReq {
		return &commandReq{Data: r.BytesCopy(), Pipeline: r.Bool(),
			Notify: readRef(r), Correlation: r.Uvarint(),
			Session: r.Bool(), Client: r.Uint64(), Seq: r.Uvarint(), Responded: r.Uvarint()}
	})
	register(102, func(b []byte, m *commandResult) []byte {
		b = wire.AppendBytes(b, m.Reply)
		b = appendID(b, m.Leader)
		return appendRemote(b, m.Err)
	}, func(r *wire.Reader) *commandResult {
		return &commandResult{Reply: r.BytesCopy(), Leader: readID(r), Err: readRemote(r)}
	})
	register(103, func(b []byte, m *Applied) []byte {
		b = appendID(b, m.Server)
		b = wire.AppendUvarint(b, uint64(len(m.Results)))
		for _, res := range m.Results {
			b = wire.AppendUvarint(b, res.Correlation)
			b = wire.AppendBytes(b, res.Reply)
		}
		return b
	}, func(r *wire.Reader) *Applied {
		m := &Applied{Server: readID(r)}
		n := r.Len(2)
		m.Results = make([]AppliedResult, n)
		for i := range m.Results {
			m.Results[i] = AppliedResult{Correlation: r.Uvarint(), Reply: r.BytesCopy()}
		}
		return m
	})
	register(104, func(b []byte, m *Rejected) []byte {
		b = appendID(b, m.Server)
		b = wire.AppendUvarint(b, m.Correlation)
		b = appendRemote(b, toRemote(m.Err))
		return appendID(b, m.Leader)
	}, func(r *wire.Reader) *Rejected {
		m := &Rejected{Server: readID(r), Correlation: r.Uvarint()}
		m.Err = readRemote(r).err(m.Server)
		m.Leader = readID(r)
		return m
	})
	register(105, func(b []byte, m *queryReq) []byte {
		b = append(b, byte(m.Kind))
		return wire.AppendBytes(b, m.Query)
	}, func(r *wire.Reader) *queryReq {
		return &queryReq{Kind: core.QueryKind(r.Uint8()), Query: r.BytesCopy()}
	})
	register(106, func(b []byte, m *queryResult) []byte {
		b = wire.AppendBytes(b, m.Reply)
		b = appendID(b, m.Leader)
		return appendRemote(b, m.Err)
	}, func(r *wire.Reader) *queryResult {
		return &queryResult{Reply: r.BytesCopy(), Leader: readID(r), Err: readRemote(r)}
	})
	register(107, func(b []byte, m *memberReq) []byte {
		b = append(b, m.Op)
		b = appendID(b, m.Member)
		return wire.AppendUvarint(b, m.Incarnation)
	}, func(r *wire.Reader) *memberReq {
		return &memberReq{Op: r.Uint8(), Member: readID(r), Incarnation: r.Uvarint()}
	})
	register(108, func(b []byte, m *memberResult) []byte {
		b = appendID(b, m.Leader)
		return appendRemote(b, m.Err)
	}, func(r *wire.Reader) *memberResult {
		return &memberResult{Leader: readID(r), Err: readRemote(r)}
	})
	register(109, func(b []byte, _ *statusReq) []byte { return b },
		func(*wire.Reader) *statusReq { return &statusReq{} })
	register(110, func(b []byte, m *ServerStatus) []byte {
		b = appendID(b, m.ID)
		b = wire.AppendString(b, m.UID)
		b = wire.AppendString(b, m.Cluster)
		b = wire.AppendString(b, m.MachineKind)
		b = wire.AppendString(b, m.Role)
		for _, v := range []uint64{m.Term, m.Commit, m.LastApplied, m.FirstIndex, m.LastIndex, m.LastTerm} {
			b = wire.AppendUvarint(b, v)
		}
		b = appendID(b, m.Leader)
		b = appendIDs(b, m.Voters)
		b = appendIDs(b, m.NonVoters)
		keys := make([]string, 0, len(m.Machine))
		for k := range m.Machine {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = wire.AppendUvarint(b, uint64(len(keys)))
		for _, k := range keys {
			b = wire.AppendString(b, k)
			b = wire.AppendString(b, m.Machine[k])
		}
		b = wire.AppendUvarint(b, m.SnapshotIndex)
		b = wire.AppendUvarint(b, m.MachineVersion)
		b = wire.AppendUvarint(b, m.RecoverTo)
		b = wire.AppendUvarint(b, m.StableIndex)
		b = wire.AppendUvarint(b, uint64(len(m.Progress)))
		for _, p := range m.Progress {
			b = appendID(b, p.ID)
			b = wire.AppendUvarint(b, p.Match)
			b = wire.AppendUvarint(b, p.Next)
			b = wire.AppendString(b, p.State)
			b = wire.AppendBool(b, p.Paused)
			b = wire.AppendUvarint(b, p.CommitAcked)
		}
		b = wire.AppendBool(b, m.Stale)
		b = appendIDs(b, m.Strangers)
		b = wire.AppendUvarint(b, m.Incarnation)
		ids := slices.SortedFunc(maps.Keys(m.Incarnations), ServerID.Compare)
		b = wire.AppendUvarint(b, uint64(len(ids)))
		for _, id := range ids {
			b = appendID(b, id)
			b = wire.AppendUvarint(b, m.Incarnations[id])
		}
		return wire.AppendUvarint(b, m.RefusedPeerMessages)
	}, func(r *wire.Reader) *ServerStatus {
		m := &ServerStatus{ID: readID(r), UID: r.String(), Cluster: r.String(), MachineKind: r.String(), Role: r.String()}
		for _, p := range []*uint64{&m.Term, &m.Commit, &m.LastApplied, &m.FirstIndex, &m.LastIndex, &m.LastTerm} {
			*p = r.Uvarint()
		}
		m.Leader = readID(r)
		m.Voters = readIDs(r)
		m.NonVoters = readIDs(r)
		if n := r.Len(2); n > 0 {
			m.Machine = make(map[string]string, n)
			for range n {
				k := r.String()
				m.Machine[k] = r.String()
			}
		}
		m.SnapshotIndex, m.MachineVersion, m.RecoverTo = r.Uvarint(), r.Uvarint(), r.Uvarint()
		m.StableIndex = r.Uvarint()
		if n := r.Len(5); n > 0 {
			m.Progress = make([]Progress, n)
			for i := range m.Progress {
				p := &m.Progress[i]
				p.ID = readID(r)
				p.Match, p.Next = r.Uvarint(), r.Uvarint()
				p.State = r.String()
				p.Paused = r.Bool()
				p.CommitAcked = r.Uvarint()
			}
		}
		m.Stale = r.Bool()
		m.Strangers = readIDs(r)
		m.Incarnation = r.Uvarint()
		if n := r.Len(3); n > 0 {
			m.Incarnations = make(map[ServerID]uint64, n)
			for range n {
				id := readID(r)
				m.Incarnations[id] = r.Uvarint()
			}
		}
		m.RefusedPeerMessages = r.Uvarint()
		return m
	})
	register(111, func(b []byte, m *snapChunk) []byte {
		b = appendID(b, m.From)
		b = wire.AppendUvarint(b, m.Incarnation)
		b = wire.AppendUvarint(b, m.Term)
		b, _ = m.Chunk.AppendBinary(b)
		return b
	}, func(r *wire.Reader) *snapChunk {
		m := &snapChunk{From: readID(r), Incarnation: r.Uvarint(), Term: r.Uvarint()}
		c, err := snapshot.DecodeChunk(r.Raw(r.Remaining()))
		if err != nil {
			r.FailWith(fmt.Errorf("snapshot chunk: %w", err))
		}
		m.Chunk = c
		if err == nil {
			checkTermIndex(r, "snapshot chunk", m.Term, c.Term, c.Index)
		}
		return m
	})
	register(112, func(b []byte, m *snapAck) []byte {
		b = appendID(b, m.From)
		b, _ = m.Ack.AppendBinary(b)
		return b
	}, func(r *wire.Reader) *snapAck {
		m := &snapAck{From: readID(r)}
		a, err := snapshot.DecodeChunkAck(r.Raw(r.Remaining()))
		if err != nil {
			r.FailWith(fmt.Errorf("snapshot ack: %w", err))
		}
		m.Ack = a
		if err == nil {
			checkTermIndex(r, "snapshot ack", 0, a.Term, a.Index)
		}
		return m
	})
	register(113, func(b []byte, m *membersAsk) []byte {
		return appendID(b, m.From)
	}, func(r *wire.Reader) *membersAsk {
		return &membersAsk{From: readID(r)}
	})
	register(114, func(b []byte, m *membersTell) []byte {
		b = appendID(b, m.From)
		b = appendIDs(b, m.Voters)
		return appendIDs(b, m.NonVoters)
	}, func(r *wire.Reader) *membersTell {
		return &membersTell{From: readID(r), Voters: readIDs(r), NonVoters: readIDs(r)}
	})
	register(120, func(b []byte, m *systemReq) []byte {
		b = append(b, m.Op)
		b = appendServerConfig(b, m.Config)
		return wire.AppendString(b, m.Name)
	}, func(r *wire.Reader) *systemReq {
		return &systemReq{Op: r.Uint8(), Config: readServerConfig(r), Name: r.String()}
	})
	register(121, func(b []byte, m *systemResult) []byte {
		return appendRemote(b, m.Err)
	}, func(r *wire.Reader) *systemResult {
		return &systemResult{Err: readRemote(r)}
	})
}
