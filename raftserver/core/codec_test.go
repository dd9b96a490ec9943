package core

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/internal/wire"
)

// sampleMessages has one message of every type, with edge values.
func sampleMessages() []Message {
	return []Message{
		&AppendEntries{Term: 7, PrevIndex: 41, PrevTerm: 6, Commit: 40, Entries: []Entry{
			{Index: 42, Term: 6, Type: EntryNormal, Data: []byte("put x")},
			{Index: 43, Term: 7, Type: EntryNoop},
			{Index: 44, Term: 7, Type: EntryConfig, Data: Membership{Voters: []ServerID{{"a", "n1"}}}.AppendBinary(nil)},
			{Index: 45, Term: 7, Type: EntryMachineVersion, Data: EncodeMachineVersion(3)},
		}},
		&AppendEntries{Term: 1},
		&AppendReply{Term: 3, Success: true, LastIndex: 1 << 40, LastTerm: 3, Commit: 9, MachineVersion: 2},
		&AppendReply{Term: 3, LastIndex: 5, LastTerm: 2, NextIndex: 6, RejectedPrev: 10},
		&PreVoteRequest{Term: 4, LastIndex: 9, LastTerm: 3, MachineVersion: 1},
		&PreVoteReply{Term: 4, Granted: true},
		&VoteRequest{Term: 4, LastIndex: 9, LastTerm: 3, Transfer: true, MachineVersion: 5},
		&VoteReply{Term: 4},
		&TimeoutNow{Term: 12},
		&Heartbeat{Term: 5, Seq: 77, Commit: 100},
		&HeartbeatReply{Term: 5, Seq: 77, Commit: 99, MachineVersion: ^uint64(0)},
		&NotLeader{Term: MaxTerm},
		&AppendReply{Term: MaxTerm, LastIndex: MaxIndex, LastTerm: MaxTerm, NextIndex: MaxIndex + 1, Commit: MaxIndex},
		&NotLeader{Term: 3, Lost: true},
		&InstallSnapshot{Term: 9, Snapshot: Snapshot{Index: 1000, Term: 8, MachineVersion: 2,
			Members: Membership{Voters: []ServerID{{"a", "n1"}, {"b", "n2"}}, NonVoters: []ServerID{{"c", "n3"}}}}},
		&InstallSnapshot{Term: 1, Snapshot: Snapshot{Index: 3, Term: 1}},
	}
}

func TestMessagesRoundTrip(t *testing.T) {
	for _, m := range sampleMessages() {
		b := m.AppendBinary([]byte("prefix"))
		require.Equal(t, "prefix", string(b[:6]), "AppendBinary must append")
		got, err := DecodeMessage(b[6:])
		require.NoError(t, err, "%T", m)
		if ae, ok := got.(*AppendEntries); ok {
			// Decoded entries come framed, for the log to keep.
			for i := range ae.Entries {
				require.True(t, ae.Entries[i].FramedOK(), "entry %d: %v", i, ae.Entries[i].Framed)
				ae.Entries[i].Framed = nil
			}
		}
		require.Equal(t, m, got)
	}
}

// TestDecodedEntriesFrames checks how decoding lays out the entries it
// copies: each one framed, a large one in a buffer of its own (whoever
// keeps it must keep nothing else alive), the small ones in one buffer
// together, so that a message costs few allocations.
func TestDecodedEntriesFrames(t *testing.T) {
	large := make([]byte, ownFrameBytes-1)
	for i := range large {
		large[i] = byte(i)
	}
	m := &AppendEntries{Term: 2, Entries: []Entry{
		{Index: 1, Term: 2, Type: EntryNormal, Data: []byte("a")},
		{Index: 2, Term: 2, Type: EntryNormal, Data: large},
		{Index: 3, Term: 2, Type: EntryNoop},
		{Index: 4, Term: 2, Type: EntryNormal, Data: large[:ownFrameBytes-2]},
		{Index: 5, Term: 2, Type: EntryNormal, Data: large},
	}}
	b := m.AppendBinary(nil)
	got, err := DecodeMessage(b)
	require.NoError(t, err)
	for i, e := range got.(*AppendEntries).Entries {
		require.True(t, e.FramedOK(), "entry %d", e.Index)
		require.Equal(t, len(e.Framed), cap(e.Framed), "entry %d: nothing may be appended into its buffer", e.Index)
		require.Equal(t, string(m.Entries[i].Data), string(e.Data), "entry %d", e.Index)
	}
	// The message, its entries, one buffer for the three small ones and
	// one for each of the two large ones.
	allocs := testing.AllocsPerRun(100, func() { _, _ = DecodeMessage(b) })
	require.Equal(t, 5.0, allocs)
}

func TestFramedOK(t *testing.T) {
	buf := []byte{byte(EntryNormal), 'a', 'b'}
	for name, c := range map[string]struct {
		e    Entry
		want bool
	}{
		"framed":             {Entry{Type: EntryNormal, Data: buf[1:], Framed: buf}, true},
		"framed, no data":    {Entry{Type: EntryNormal, Framed: buf[:1]}, true},
		"not framed":         {Entry{Type: EntryNormal, Data: buf[1:]}, false},
		"other type":         {Entry{Type: EntryConfig, Data: buf[1:], Framed: buf}, false},
		"a copy of the data": {Entry{Type: EntryNormal, Data: []byte("ab"), Framed: buf}, false},
		"shorter data":       {Entry{Type: EntryNormal, Data: buf[1:2], Framed: buf}, false},
		"data elsewhere":     {Entry{Type: EntryNormal, Data: buf[:2], Framed: buf[:3]}, false},
	} {
		if got := c.e.FramedOK(); got != c.want {
			t.Errorf("%s: FramedOK = %v, want %v", name, got, c.want)
		}
	}
}

func TestDecodeMessageCopiesEntryData(t *testing.T) {
	m := &AppendEntries{Term: 2, Entries: []Entry{{Index: 1, Term: 2, Type: EntryNormal, Data: []byte("abc")}}}
	b := m.AppendBinary(nil)
	got, err := DecodeMessage(b)
	require.NoError(t, err)
	for i := range b {
		b[i] = 0
	}
	e := got.(*AppendEntries).Entries[0]
	require.Equal(t, "abc", string(e.Data))
	require.Equal(t, append([]byte{byte(EntryNormal)}, "abc"...), e.Framed)
}

func TestDecodeMessageRejectsMalformed(t *testing.T) {
	ae := func(m *AppendEntries) []byte { return m.AppendBinary(nil) }
	cases := map[string][]byte{
		"empty":         nil,
		"unknown tag":   {99, 1},
		"zero tag":      {0},
		"truncated":     (&VoteRequest{Term: 300, LastIndex: 300, LastTerm: 300}).AppendBinary(nil)[:4],
		"trailing":      append((&TimeoutNow{Term: 1}).AppendBinary(nil), 0),
		"bad bool":      {byte(kindVoteReply), 1, 2},
		"huge count":    {byte(kindAppendEntries), 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"unknown entry": ae(&AppendEntries{Term: 2, Entries: []Entry{{Term: 2, Type: 9}}}),
		"zero entry":    ae(&AppendEntries{Term: 2, Entries: []Entry{{Term: 2, Type: 0}}}),
		"term backwards": ae(&AppendEntries{Term: 5, PrevTerm: 3, Entries: []Entry{
			{Term: 4, Type: EntryNormal}, {Term: 3, Type: EntryNormal}}}),
		"entry above msg term": ae(&AppendEntries{Term: 2, Entries: []Entry{{Term: 3, Type: EntryNormal}}}),
		"prev above msg term":  ae(&AppendEntries{Term: 2, PrevTerm: 3}),
		"index overflow": ae(&AppendEntries{Term: 2, PrevIndex: ^uint64(0), PrevTerm: 1,
			Entries: []Entry{{Term: 2, Type: EntryNormal}}}),
		"version entry without data": ae(&AppendEntries{Term: 2, Entries: []Entry{{Term: 2, Type: EntryMachineVersion}}}),
		"version entry with trailing data": ae(&AppendEntries{Term: 2, Entries: []Entry{
			{Term: 2, Type: EntryMachineVersion, Data: append(EncodeMachineVersion(1), 0)}}}),
		"snapshot term above msg term": (&InstallSnapshot{Term: 2, Snapshot: Snapshot{Index: 5, Term: 3}}).AppendBinary(nil),
		"snapshot at 0 with a term":    (&InstallSnapshot{Term: 2, Snapshot: Snapshot{Term: 1}}).AppendBinary(nil),
		"snapshot with duplicate members": (&InstallSnapshot{Term: 2, Snapshot: Snapshot{Index: 5, Term: 1,
			Members: Membership{Voters: []ServerID{{"a", "n1"}}, NonVoters: []ServerID{{"a", "n1"}}}}}).AppendBinary(nil),
		"snapshot truncated": (&InstallSnapshot{Term: 2, Snapshot: Snapshot{Index: 5, Term: 1,
			Members: Membership{Voters: []ServerID{{"a", "n1"}}}}}).AppendBinary(nil)[:8],
		"reply without version": (&HeartbeatReply{Term: 1, Seq: 1, Commit: 1}).AppendBinary(nil)[:4],
	}
	for name, b := range cases {
		_, err := DecodeMessage(b)
		require.ErrorIs(t, err, ErrMalformed, name)
	}
	// Low-level faults also say so.
	_, err := DecodeMessage(cases["truncated"])
	require.True(t, errors.Is(err, wire.ErrMalformed))
}

// TestDecodeMessageRefusesTermsAndIndexesOutOfRange: every term and index
// a message carries is refused above MaxTerm or MaxIndex, so that nothing a
// peer sends can make the core compute term+1 or index+1 that wraps.
func TestDecodeMessageRefusesTermsAndIndexesOutOfRange(t *testing.T) {
	const bigT, bigI = MaxTerm + 1, MaxIndex + 1
	cases := map[string]Message{
		"append term":            &AppendEntries{Term: bigT},
		"append prev index":      &AppendEntries{Term: 1, PrevIndex: bigI},
		"append commit":          &AppendEntries{Term: 1, Commit: bigI},
		"append entries past":    &AppendEntries{Term: 1, PrevIndex: MaxIndex, Entries: []Entry{{Term: 1, Type: EntryNoop}}},
		"reply term":             &AppendReply{Term: bigT},
		"reply last index":       &AppendReply{Term: 1, LastIndex: bigI},
		"reply last term":        &AppendReply{Term: 1, LastTerm: bigT},
		"reply next index":       &AppendReply{Term: 1, NextIndex: MaxIndex + 2},
		"reply rejected prev":    &AppendReply{Term: 1, RejectedPrev: bigI},
		"reply commit":           &AppendReply{Term: 1, Commit: bigI},
		"prevote term":           &PreVoteRequest{Term: bigT},
		"prevote last index":     &PreVoteRequest{Term: 1, LastIndex: bigI},
		"prevote last term":      &PreVoteRequest{Term: 1, LastTerm: bigT},
		"prevote reply term":     &PreVoteReply{Term: bigT, Granted: true},
		"vote term":              &VoteRequest{Term: bigT},
		"vote last index":        &VoteRequest{Term: 1, LastIndex: bigI},
		"vote last term":         &VoteRequest{Term: 1, LastTerm: bigT},
		"vote reply term":        &VoteReply{Term: bigT},
		"timeout now term":       &TimeoutNow{Term: bigT},
		"heartbeat term":         &Heartbeat{Term: ^uint64(0)},
		"heartbeat commit":       &Heartbeat{Term: 1, Commit: bigI},
		"heartbeat reply term":   &HeartbeatReply{Term: bigT},
		"heartbeat reply commit": &HeartbeatReply{Term: 1, Commit: bigI},
		"not leader term":        &NotLeader{Term: bigT},
		"snapshot term":          &InstallSnapshot{Term: bigT, Snapshot: Snapshot{Index: 1, Term: bigT}},
		"snapshot index":         &InstallSnapshot{Term: 1, Snapshot: Snapshot{Index: bigI, Term: 1}},
	}
	for name, m := range cases {
		_, err := DecodeMessage(m.AppendBinary(nil))
		require.ErrorIs(t, err, ErrOutOfRange, name)
		require.ErrorIs(t, err, ErrMalformed, name)
	}
}

func TestMembershipRoundTripAndValidation(t *testing.T) {
	m := Membership{
		Voters:    []ServerID{{"a", "n1"}, {"b", "n2"}},
		NonVoters: []ServerID{{"c", "n3"}},
	}
	got, err := DecodeMembership(m.AppendBinary(nil))
	require.NoError(t, err)
	require.Equal(t, m, got)

	empty, err := DecodeMembership(Membership{}.AppendBinary(nil))
	require.NoError(t, err)
	require.Empty(t, empty.Voters)

	dup := Membership{Voters: []ServerID{{"a", "n1"}}, NonVoters: []ServerID{{"a", "n1"}}}
	_, err = DecodeMembership(dup.AppendBinary(nil))
	require.ErrorIs(t, err, ErrMalformed)
	require.ErrorIs(t, err, ErrInvalidMembership)

	_, err = DecodeMembership(Membership{Voters: []ServerID{{"", "n1"}}}.AppendBinary(nil))
	require.ErrorIs(t, err, ErrInvalidMembership)

	_, err = DecodeMembership([]byte{5, 1})
	require.ErrorIs(t, err, ErrMalformed)
}

// FuzzDecodeMessage: any input either fails with ErrMalformed or decodes
// to a message that re-encodes to the same bytes.
func FuzzDecodeMessage(f *testing.F) {
	for _, m := range sampleMessages() {
		f.Add(m.AppendBinary(nil))
	}
	f.Add([]byte{})
	f.Add([]byte{byte(kindAppendEntries), 1, 0, 0, 0, 200})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMessage(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again, err := DecodeMessage(m.AppendBinary(nil))
		if err != nil {
			t.Fatalf("re-encoding of %#v does not decode: %v", m, err)
		}
		if string(again.AppendBinary(nil)) != string(m.AppendBinary(nil)) {
			t.Fatalf("unstable encoding for %#v", m)
		}
	})
}

// FuzzDecodeMembership: the config entry payload decoder never panics and
// accepts only valid memberships.
func FuzzDecodeMembership(f *testing.F) {
	f.Add(Membership{Voters: []ServerID{{"a", "n1"}}, NonVoters: []ServerID{{"b", "n2"}}}.AppendBinary(nil))
	f.Add([]byte{0, 0})
	f.Add([]byte{1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMembership(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("decoded an invalid membership: %v", err)
		}
	})
}
