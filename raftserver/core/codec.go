package core

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/rago-raft/rago/internal/wire"
)

// Wire format of messages (all integers uvarint unless noted; "bool" is one
// byte 0 or 1). The first byte is the type tag (msgKind).
//
//	AppendEntries   tag=1 term prev_index prev_term commit count
//	                count x { term type(u8) data(bytes) }   index = prev_index+1+i
//	AppendReply     tag=2 term success(bool) last_index last_term next_index rejected_prev commit
//	                machine_version
//	PreVoteRequest  tag=3 term last_index last_term machine_version
//	PreVoteReply    tag=4 term granted(bool)
//	VoteRequest     tag=5 term last_index last_term transfer(bool) machine_version
//	VoteReply       tag=6 term granted(bool)
//	TimeoutNow      tag=7 term
//	Heartbeat       tag=8 term seq commit
//	HeartbeatReply  tag=9 term seq commit machine_version
//	NotLeader       tag=10 term lost(bool)
//	InstallSnapshot tag=11 term index snapshot_term machine_version members
//	                (members as in Membership.AppendBinary)
//
// Entry indexes are implied by prev_index, so a decoded AppendEntries always
// carries consecutive entries. Decoders also reject entry types they do not
// know, machine version entries whose data is not one uvarint, entry terms
// that go backwards or exceed the message term, a snapshot whose term
// exceeds the message term or that sits at index 0 with a term, invalid
// members, and trailing bytes. They refuse terms above MaxTerm and indexes
// above MaxIndex (ErrOutOfRange): see MaxTerm.

// AppendBinary implements Message.
func (m *AppendEntries) AppendBinary(b []byte) []byte {
	// Grow b once: a message carries up to MaxAppendBytes of entries, and
	// growing to that by appends allocates about twice as much.
	size := 1 + 5*binary.MaxVarintLen64
	for i := range m.Entries {
		size += 2*binary.MaxVarintLen64 + 1 + len(m.Entries[i].Data)
	}
	b = slices.Grow(b, size)
	b = append(b, byte(kindAppendEntries))
	b = wire.AppendUvarint(b, m.Term)
	b = wire.AppendUvarint(b, m.PrevIndex)
	b = wire.AppendUvarint(b, m.PrevTerm)
	b = wire.AppendUvarint(b, m.Commit)
	b = wire.AppendUvarint(b, uint64(len(m.Entries)))
	for i := range m.Entries {
		e := &m.Entries[i]
		b = wire.AppendUvarint(b, e.Term)
		b = wire.AppendUint8(b, uint8(e.Type))
		b = wire.AppendBytes(b, e.Data)
	}
	return b
}

// AppendBinary implements Message.
func (m *AppendReply) AppendBinary(b []byte) []byte {
	b = append(b, byte(kindAppendReply))
	b = wire.AppendUvarint(b, m.Term)
	b = wire.AppendBool(b, m.Success)
	b = wire.AppendUvarint(b, m.LastIndex)
	b = wire.AppendUvarint(b, m.LastTerm)
	b = wire.AppendUvarint(b, m.NextIndex)
	b = wire.AppendUvarint(b, m.RejectedPrev)
	b = wire.AppendUvarint(b, m.Commit)
	return wire.AppendUvarint(b, m.MachineVersion)
}

// AppendBinary implements Message.
func (m *PreVoteRequest) AppendBinary(b []byte) []byte {
	b = append(b, byte(kindPreVoteRequest))
	b = wire.AppendUvarint(b, m.Term)
	b = wire.AppendUvarint(b, m.LastIndex)
	b = wire.AppendUvarint(b, m.LastTerm)
	return wire.AppendUvarint(b, m.MachineVersion)
}

// AppendBinary implements Message.
func (m *PreVoteReply) AppendBinary(b []byte) []byte {
	b = append(b, byte(kindPreVoteReply))
	b = wire.AppendUvarint(b, m.Term)
	return wire.AppendBool(b, m.Granted)
}

// AppendBinary implements Message.
func (m *VoteRequest) AppendBinary(b []byte) []byte {
	b = append(b, byte(kindVoteRequest))
	b = wire.AppendUvarint(b, m.Term)
	b = wire.AppendUvarint(b, m.LastIndex)
	b = wire.AppendUvarint(b, m.LastTerm)
	b = wire.AppendBool(b, m.Transfer)
	return wire.AppendUvarint(b, m.MachineVersion)
}

// AppendBinary implements Message.
func (m *VoteReply) AppendBinary(b []byte) []byte {
	b = append(b, byte(kindVoteReply))
	b = wire.AppendUvarint(b, m.Term)
	return wire.AppendBool(b, m.Granted)
}

// AppendBinary implements Message.
func (m *TimeoutNow) AppendBinary(b []byte) []byte {
	b = append(b, byte(kindTimeoutNow))
	return wire.AppendUvarint(b, m.Term)
}

// AppendBinary implements Message.
func (m *Heartbeat) AppendBinary(b []byte) []byte {
	b = append(b, byte(kindHeartbeat))
	b = wire.AppendUvarint(b, m.Term)
	b = wire.AppendUvarint(b, m.Seq)
	return wire.AppendUvarint(b, m.Commit)
}

// AppendBinary implements Message.
func (m *HeartbeatReply) AppendBinary(b []byte) []byte {
	b = append(b, byte(kindHeartbeatReply))
	b = wire.AppendUvarint(b, m.Term)
	b = wire.AppendUvarint(b, m.Seq)
	b = wire.AppendUvarint(b, m.Commit)
	return wire.AppendUvarint(b, m.MachineVersion)
}

// AppendBinary implements Message.
func (m *NotLeader) AppendBinary(b []byte) []byte {
	b = append(b, byte(kindNotLeader))
	b = wire.AppendUvarint(b, m.Term)
	return wire.AppendBool(b, m.Lost)
}

// AppendBinary implements Message.
func (m *InstallSnapshot) AppendBinary(b []byte) []byte {
	b = append(b, byte(kindInstallSnapshot))
	b = wire.AppendUvarint(b, m.Term)
	b = wire.AppendUvarint(b, m.Snapshot.Index)
	b = wire.AppendUvarint(b, m.Snapshot.Term)
	b = wire.AppendUvarint(b, m.Snapshot.MachineVersion)
	return m.Snapshot.Members.AppendBinary(b)
}

// DecodeMessage decodes one message produced by a Message's AppendBinary.
// Entry data in a decoded AppendEntries is copied, so b may be reused.
// Malformed input yields an error wrapping ErrMalformed (and, for low-level
// faults, wire.ErrMalformed; for a term or index beyond MaxTerm or
// MaxIndex, ErrOutOfRange); DecodeMessage never panics.
func DecodeMessage(b []byte) (Message, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty input", ErrMalformed)
	}
	r := wire.NewReader(b[1:])
	var m Message
	switch msgKind(b[0]) {
	case kindAppendEntries:
		m = decodeAppendEntries(r)
	case kindAppendReply:
		m = &AppendReply{Term: r.Uvarint(), Success: r.Bool(), LastIndex: r.Uvarint(),
			LastTerm: r.Uvarint(), NextIndex: r.Uvarint(), RejectedPrev: r.Uvarint(), Commit: r.Uvarint(),
			MachineVersion: r.Uvarint()}
	case kindPreVoteRequest:
		m = &PreVoteRequest{Term: r.Uvarint(), LastIndex: r.Uvarint(), LastTerm: r.Uvarint(), MachineVersion: r.Uvarint()}
	case kindPreVoteReply:
		m = &PreVoteReply{Term: r.Uvarint(), Granted: r.Bool()}
	case kindVoteRequest:
		m = &VoteRequest{Term: r.Uvarint(), LastIndex: r.Uvarint(), LastTerm: r.Uvarint(), Transfer: r.Bool(),
			MachineVersion: r.Uvarint()}
	case kindVoteReply:
		m = &VoteReply{Term: r.Uvarint(), Granted: r.Bool()}
	case kindTimeoutNow:
		m = &TimeoutNow{Term: r.Uvarint()}
	case kindHeartbeat:
		m = &Heartbeat{Term: r.Uvarint(), Seq: r.Uvarint(), Commit: r.Uvarint()}
	case kindHeartbeatReply:
		m = &HeartbeatReply{Term: r.Uvarint(), Seq: r.Uvarint(), Commit: r.Uvarint(), MachineVersion: r.Uvarint()}
	case kindNotLeader:
		m = &NotLeader{Term: r.Uvarint(), Lost: r.Bool()}
	case kindInstallSnapshot:
		m = decodeInstallSnapshot(r)
	default:
		return nil, fmt.Errorf("%w: unknown message tag %d", ErrMalformed, b[0])
	}
	if err := r.Done(); err != nil {
		return nil, fmt.Errorf("%w: tag %d: %w", ErrMalformed, b[0], err)
	}
	if err := checkBounds(m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return m, nil
}

// ownFrameBytes: a decoded entry whose frame (type and data) is at least
// this long gets a buffer of its own. It matches what the WAL keeps
// rather than copies.
const ownFrameBytes = 256

func decodeAppendEntries(r *wire.Reader) *AppendEntries {
	m := &AppendEntries{Term: r.Uvarint(), PrevIndex: r.Uvarint(), PrevTerm: r.Uvarint(), Commit: r.Uvarint()}
	// An entry takes at least three bytes: term, type, data length.
	n := r.Len(3)
	if r.Err() != nil {
		return m
	}
	if m.PrevTerm > m.Term {
		r.Fail("prev term %d above message term %d", m.PrevTerm, m.Term)
		return m
	}
	if m.PrevIndex > math.MaxUint64-uint64(n) {
		r.Fail("prev index %d + %d entries overflows", m.PrevIndex, n)
		return m
	}
	// Every entry's type and data are copied out of the frame, framed
	// (see Entry.Framed) so that the log can keep them without another
	// copy. An entry of ownFrameBytes or more gets a buffer of its own, so
	// that whoever keeps it keeps nothing else alive; the smaller ones
	// share one buffer, sized by a first pass.
	var small []byte
	if n > 0 {
		m.Entries = make([]Entry, n)
		scan, size := *r, 0
		for range n {
			scan.Uvarint()
			scan.Uint8()
			if f := 1 + len(scan.Bytes()); f < ownFrameBytes {
				size += f
			}
		}
		small = make([]byte, 0, size)
	}
	lastTerm := m.PrevTerm
	for i := range m.Entries {
		e := &m.Entries[i]
		e.Index = m.PrevIndex + 1 + uint64(i)
		e.Term = r.Uvarint()
		e.Type = EntryType(r.Uint8())
		p := r.Bytes()
		if 1+len(p) >= ownFrameBytes {
			e.Framed = make([]byte, 1+len(p))
			e.Framed[0] = byte(e.Type)
			copy(e.Framed[1:], p)
		} else {
			at := len(small)
			small = append(small, byte(e.Type))
			small = append(small, p...)
			e.Framed = small[at:len(small):len(small)]
		}
		if len(p) > 0 {
			e.Data = e.Framed[1:]
		}
		if r.Err() != nil {
			return m
		}
		if e.Type == 0 || e.Type > maxEntryType {
			r.Fail("entry %d has unknown type %d", e.Index, e.Type)
			return m
		}
		if e.Type == EntryMachineVersion {
			if _, err := DecodeMachineVersion(e.Data); err != nil {
				r.Fail("entry %d: %v", e.Index, err)
				return m
			}
		}
		if e.Term < lastTerm || e.Term > m.Term {
			r.Fail("entry %d has term %d outside [%d, %d]", e.Index, e.Term, lastTerm, m.Term)
			return m
		}
		lastTerm = e.Term
	}
	return m
}

func decodeInstallSnapshot(r *wire.Reader) *InstallSnapshot {
	m := &InstallSnapshot{Term: r.Uvarint()}
	s := &m.Snapshot
	s.Index, s.Term, s.MachineVersion = r.Uvarint(), r.Uvarint(), r.Uvarint()
	s.Members = readMembership(r)
	if r.Err() != nil {
		return m
	}
	switch {
	case s.Term > m.Term:
		r.Fail("snapshot term %d above message term %d", s.Term, m.Term)
	case s.Index == 0 && s.Term != 0:
		r.Fail("snapshot at index 0 has term %d", s.Term)
	default:
		if err := s.Members.Validate(); err != nil {
			r.Fail("snapshot members: %v", err)
		}
	}
	return m
}
