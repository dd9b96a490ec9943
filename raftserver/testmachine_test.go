package raftserver

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/rago-raft/rago/snapshot"
)

// kvMachine is the test machine: commands "set k v", "del k", "panic";
// queries "get k" and "len". Replies are the previous value. It releases
// the log at every command but "hold k v" (a set that keeps it), and
// snapshots as a JSON copy of its map.
type kvMachine struct {
	data    map[string]string
	applied uint64
}

func newKV([]byte) (Machine, error) { return &kvMachine{data: map[string]string{}}, nil }

func (m *kvMachine) Apply(ctx *ApplyContext, cmd []byte) []byte {
	m.applied = ctx.Index
	parts := strings.SplitN(string(cmd), " ", 3)
	if parts[0] != "hold" {
		ctx.ReleaseCursor(ctx.Index)
	}
	switch parts[0] {
	case "hold": // a set that keeps the log: the state needs it
		m.data[parts[1]] = parts[2]
		return nil
	case "set":
		old := m.data[parts[1]]
		m.data[parts[1]] = parts[2]
		return []byte(old)
	case "del":
		old := m.data[parts[1]]
		delete(m.data, parts[1])
		return []byte(old)
	case "panic":
		panic("poison command")
	case "incr":
		var n uint64
		if v, ok := m.data[parts[1]]; ok {
			n = binary.BigEndian.Uint64([]byte(v))
		}
		n++
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], n)
		m.data[parts[1]] = string(b[:])
		return b[:]
	}
	return []byte("unknown command")
}

func (m *kvMachine) Query(q []byte) ([]byte, error) {
	parts := strings.SplitN(string(q), " ", 2)
	switch parts[0] {
	case "get":
		return []byte(m.data[parts[1]]), nil
	case "len":
		return []byte(fmt.Sprint(len(m.data))), nil
	}
	return nil, fmt.Errorf("unknown query %q", q)
}

type kvState struct {
	Data    map[string]string
	Applied uint64
}

func (m *kvMachine) Snapshot() (snapshot.Source, error) {
	b, err := json.Marshal(kvState{Data: m.data, Applied: m.applied})
	return snapshot.BytesSource(b), err
}

func (m *kvMachine) Restore(r io.Reader) error {
	var st kvState
	if err := json.NewDecoder(r).Decode(&st); err != nil {
		return err
	}
	m.data, m.applied = st.Data, st.Applied
	if m.data == nil {
		m.data = map[string]string{}
	}
	return nil
}
