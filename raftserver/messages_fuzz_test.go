package raftserver

import (
	"errors"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/raftserver/core"
	"github.com/rago-raft/rago/snapshot"
)

// The fuzz targets below run each of this package's message codecs as a
// node runs them on a message from another node (actor.Decode): any bytes
// either fail with actor.ErrBadMessage or decode to a value that encodes
// and decodes again to the same value. Each is seeded with valid
// encodings.

var (
	msgA, msgB = ServerID{Name: "kv1", Node: "127.0.0.1:4001"}, ServerID{Name: "kv2", Node: "127.0.0.1:4002"}
	msgRef     = actor.Ref{Name: "notify", Node: "127.0.0.1:4003"}
)

func sampleChunk() snapshot.Chunk {
	c := snapshot.Chunk{Transfer: 3, Index: 40, Term: 2, ID: 0xbeef, Size: 4096, Offset: 512, Data: []byte("snapshot bytes")}
	c.CRC = c.Checksum()
	return c
}

// fuzzCodec seeds f with the encodings of seeds (all of one type) and
// checks the decoder of that type on every input.
func fuzzCodec[T any](f *testing.F, seeds ...T) {
	tag, version, _, err := actor.Encode(seeds[0])
	require.NoError(f, err)
	for _, s := range seeds {
		_, _, b, err := actor.Encode(s)
		require.NoError(f, err)
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := actor.Decode(tag, version, data)
		if err != nil {
			if !errors.Is(err, actor.ErrBadMessage) {
				t.Fatalf("error %v does not wrap actor.ErrBadMessage", err)
			}
			return
		}
		if _, ok := m.(T); !ok {
			t.Fatalf("tag %d decoded to %T", tag, m)
		}
		_, _, again, err := actor.Encode(m)
		if err != nil {
			t.Fatalf("re-encoding %#v: %v", m, err)
		}
		m2, err := actor.Decode(tag, version, again)
		if err != nil {
			t.Fatalf("re-encoding of %#v does not decode: %v", m, err)
		}
		require.Equal(t, m, m2, "round trip")
	})
}

func FuzzPeerMsg(f *testing.F) {
	fuzzCodec(f,
		&peerMsg{From: msgA, Msg: &core.Heartbeat{Term: 3, Seq: 9, Commit: 7}},
		&peerMsg{From: msgB, Msg: &core.AppendEntries{Term: 4, PrevIndex: 10, PrevTerm: 3, Commit: 9,
			Entries: []core.Entry{{Index: 11, Term: 4, Type: core.EntryNormal, Data: []byte("set a 1")}}}},
		&peerMsg{From: msgA, Msg: &core.VoteRequest{Term: core.MaxTerm, LastIndex: core.MaxIndex, LastTerm: core.MaxTerm}},
		&peerMsg{From: msgA, Msg: &core.AppendReply{Term: 2, Success: true, LastIndex: 5, LastTerm: 2, NextIndex: 6}},
	)
}

func FuzzCommandReq(f *testing.F) {
	fuzzCodec(f,
		&commandReq{Data: []byte("set a 1")},
		&commandReq{Data: []byte("x"), Pipeline: true, Notify: msgRef, Correlation: 77,
			Session: true, Client: 1 << 60, Seq: 5, Responded: 4},
	)
}

func FuzzCommandResult(f *testing.F) {
	fuzzCodec(f,
		&commandResult{Reply: []byte("ok"), Leader: msgA},
		&commandResult{Leader: msgB, Err: remoteError{Code: codeNotLeader, Detail: "not leader", Leader: msgB}},
	)
}

func FuzzApplied(f *testing.F) {
	fuzzCodec(f,
		&Applied{Server: msgA, Results: []AppliedResult{{Correlation: 1, Reply: []byte("a")}, {Correlation: 2}}},
		&Applied{Server: msgB, Results: []AppliedResult{}},
	)
}

func FuzzRejected(f *testing.F) {
	fuzzCodec(f,
		&Rejected{Server: msgA, Correlation: 3, Err: ErrNoLeader},
		&Rejected{Server: msgA, Correlation: 4, Err: &NotLeaderError{Server: msgA, Leader: msgB}, Leader: msgB},
	)
}

func FuzzQueryReq(f *testing.F) {
	fuzzCodec(f, &queryReq{Kind: core.QueryConsistent, Query: []byte("get a")})
}

func FuzzQueryResult(f *testing.F) {
	fuzzCodec(f,
		&queryResult{Reply: []byte("1"), Leader: msgA},
		&queryResult{Err: remoteError{Code: codeOther, Detail: "boom"}},
	)
}

func FuzzMemberReq(f *testing.F) {
	fuzzCodec(f, &memberReq{Op: opAddMember, Member: msgB}, &memberReq{Op: opTriggerElection})
}

func FuzzMemberResult(f *testing.F) {
	fuzzCodec(f, &memberResult{Leader: msgA}, &memberResult{Err: remoteError{Code: codeMembershipChange, Detail: "pending"}})
}

func FuzzStatusReq(f *testing.F) {
	fuzzCodec(f, &statusReq{})
}

func FuzzServerStatus(f *testing.F) {
	fuzzCodec(f,
		&ServerStatus{ID: msgA, UID: "u1", Cluster: "kv", MachineKind: "kv", Role: "leader", Term: 3, Leader: msgA,
			Commit: 10, LastApplied: 10, FirstIndex: 1, LastIndex: 10, LastTerm: 3,
			Voters: []ServerID{msgA, msgB}, Machine: map[string]string{"keys": "4"},
			SnapshotIndex: 5, MachineVersion: 1, StableIndex: 10,
			Progress:            []Progress{{ID: msgB, Match: 10, Next: 11, State: "replicate", CommitAcked: 10}},
			RefusedPeerMessages: 3},
		&ServerStatus{ID: msgB, Role: "follower"},
	)
}

func FuzzSnapChunk(f *testing.F) {
	fuzzCodec(f, &snapChunk{From: msgA, Term: 2, Chunk: sampleChunk()})
}

func FuzzSnapAck(f *testing.F) {
	fuzzCodec(f,
		&snapAck{From: msgB, Ack: snapshot.ChunkAck{Transfer: 3, Index: 40, Term: 2, Next: 526, Status: snapshot.AckProgress}},
		&snapAck{From: msgB, Ack: snapshot.ChunkAck{Transfer: 3, Index: 40, Term: 2, Status: snapshot.AckRejected, Reason: snapshot.RejectStale}},
	)
}

func FuzzMembersAsk(f *testing.F) {
	fuzzCodec(f, &membersAsk{From: msgA})
}

func FuzzMembersTell(f *testing.F) {
	fuzzCodec(f, &membersTell{From: msgB, Voters: []ServerID{msgA, msgB}}, &membersTell{From: msgA, NonVoters: []ServerID{msgB}})
}

func FuzzSystemReq(f *testing.F) {
	fuzzCodec(f,
		&systemReq{Op: sysStart, Config: ServerConfig{ID: msgA, Cluster: "kv", Machine: MachineSpec{Kind: "kv", Config: []byte("{}")},
			InitialMembers: []ServerID{msgA, msgB}}},
		&systemReq{Op: sysStop, Name: "kv1"},
	)
}

func FuzzSystemResult(f *testing.F) {
	fuzzCodec(f, &systemResult{}, &systemResult{Err: remoteError{Code: codeClusterExists, Detail: "exists"}})
}

func FuzzWatchLogReq(f *testing.F) {
	fuzzCodec(f, &watchLogReq{From: 1, Window: 64, Notify: msgRef})
}

func FuzzWatchLogResult(f *testing.F) {
	fuzzCodec(f, &watchLogResult{}, &watchLogResult{Err: remoteError{Code: codeCompacted, Detail: "compacted"}, First: 40, SnapshotIndex: 39})
}

func FuzzLogBatch(f *testing.F) {
	fuzzCodec(f, &logBatch{Entries: []LogEntry{
		{Index: 1, Term: 1, Kind: LogNoop},
		{Index: 2, Term: 1, Kind: LogCommand, Command: []byte("set a 1"), Client: 9, Seq: 1},
	}})
}

func FuzzLogAck(f *testing.F) {
	fuzzCodec(f, &logAck{Watcher: msgRef, N: 8})
}

func FuzzUnwatchLog(f *testing.F) {
	fuzzCodec(f, &unwatchLog{Watcher: msgRef})
}

func FuzzLogEnd(f *testing.F) {
	fuzzCodec(f, &logEnd{From: 5, First: 40, SnapshotIndex: 39, Err: remoteError{Code: codeCompacted, Detail: "compacted"}})
}

// TestMessagesOfOtherVersionsAreRefused: every codec of this package
// refuses a version it does not read, with an error naming it.
func TestMessagesOfOtherVersionsAreRefused(t *testing.T) {
	for _, m := range []any{&peerMsg{From: msgA, Msg: &core.TimeoutNow{Term: 1}}, &commandReq{}, &commandResult{},
		&Applied{}, &Rejected{}, &queryReq{}, &queryResult{}, &memberReq{}, &memberResult{}, &statusReq{},
		&ServerStatus{}, &snapChunk{Chunk: sampleChunk()}, &snapAck{Ack: snapshot.ChunkAck{Transfer: 1, Status: snapshot.AckProgress}},
		&membersAsk{}, &membersTell{}, &systemReq{}, &systemResult{}, &watchLogReq{}, &watchLogResult{}, &logBatch{}, &logAck{}, &unwatchLog{}, &logEnd{}} {
		tag, version, b, err := actor.Encode(m)
		require.NoError(t, err)
		_, err = actor.Decode(tag, version, b)
		require.NoError(t, err, "%T", m)
		for _, v := range []uint8{0, version + 1, math.MaxUint8} {
			_, err = actor.Decode(tag, v, b)
			var ve *actor.VersionError
			require.ErrorAs(t, err, &ve, "%T version %d", m, v)
			require.Equal(t, v, ve.Got)
		}
	}
}

// TestMessagesOutOfRangeAreRefused: a Raft message or a snapshot transfer
// message carrying a term or index beyond the core's bounds does not
// decode, so it never reaches a server.
func TestMessagesOutOfRangeAreRefused(t *testing.T) {
	top := uint64(math.MaxUint64)
	big := sampleChunk()
	big.Index, big.Term = core.MaxIndex+1, core.MaxTerm+1
	big.CRC = big.Checksum()
	for _, m := range []any{
		&peerMsg{From: msgA, Msg: &core.Heartbeat{Term: top, Seq: 1}},
		&peerMsg{From: msgA, Msg: &core.PreVoteRequest{Term: 2, LastIndex: top, LastTerm: 1}},
		&snapChunk{From: msgA, Term: core.MaxTerm + 1, Chunk: sampleChunk()},
		&snapChunk{From: msgA, Term: 2, Chunk: big},
		&snapAck{From: msgA, Ack: snapshot.ChunkAck{Transfer: 1, Index: top, Term: 1, Status: snapshot.AckProgress}},
	} {
		tag, version, b, err := actor.Encode(m)
		require.NoError(t, err)
		_, err = actor.Decode(tag, version, b)
		require.ErrorIs(t, err, core.ErrOutOfRange, "%#v", m)
		require.ErrorIs(t, err, actor.ErrBadMessage, "%#v", m)
	}
}
