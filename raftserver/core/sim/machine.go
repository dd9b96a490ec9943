package sim

import (
	"encoding/binary"
	"hash/fnv"
	"maps"
	"slices"

	"github.com/rago-raft/rago/raftserver/core"
)

// machineState is a member's simulated machine: the key-value map, plus
// what the server tracks while applying so that it can describe a snapshot
// (the config and machine version in effect), plus a rolling hash of every
// entry applied (the same chain as the log's, so a snapshot's hash can be
// compared with the committed prefix).
type machineState struct {
	kv      map[string]string
	members core.Membership // no voters: the initial members
	version uint64
	hash    uint64
	index   uint64
	term    uint64
}

func newMachineState() machineState { return machineState{kv: map[string]string{}} }

func (s machineState) clone() machineState {
	s.kv = maps.Clone(s.kv)
	s.members = s.members.Clone()
	return s
}

// apply applies one committed entry. It returns an error for entries that
// do not decode (the core checked them, so it means a bug).
func (s *machineState) apply(e *core.Entry) error {
	switch e.Type {
	case core.EntryNormal:
		if k, v, ok := decodePut(e.Data); ok {
			s.kv[k] = v
		}
	case core.EntryConfig:
		m, err := core.DecodeMembership(e.Data)
		if err != nil {
			return err
		}
		s.members = m
	case core.EntryMachineVersion:
		v, err := core.DecodeMachineVersion(e.Data)
		if err != nil {
			return err
		}
		s.version = v
	}
	s.hash = chain(s.hash, e)
	s.index, s.term = e.Index, e.Term
	return nil
}

// snapshot describes the state as a snapshot at its index.
func (s *machineState) snapshot() core.Snapshot {
	return core.Snapshot{Index: s.index, Term: s.term, Members: s.members.Clone(), MachineVersion: s.version}
}

// digest is a hash of the whole state: two members with equal digests at an
// index hold the same machine.
func (s *machineState) digest() uint64 {
	h := fnv.New64a()
	var b [8]byte
	for _, k := range slices.Sorted(maps.Keys(s.kv)) {
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write([]byte(s.kv[k]))
		h.Write([]byte{0})
	}
	h.Write(s.members.AppendBinary(nil))
	for _, x := range []uint64{s.version, s.hash, s.index, s.term} {
		binary.LittleEndian.PutUint64(b[:], x)
		h.Write(b[:])
	}
	return h.Sum64()
}
