package raftserver

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// kvMachine is the test machine: commands "set k v", "del k", "panic";
// queries "get k" and "len". Replies are the previous value.
type kvMachine struct {
	data    map[string]string
	applied uint64
}

func newKV([]byte) (Machine, error) { return &kvMachine{data: map[string]string{}}, nil }

func (m *kvMachine) Apply(ctx *ApplyContext, cmd []byte) []byte {
	m.applied = ctx.Index
	parts := strings.SplitN(string(cmd), " ", 3)
	switch parts[0] {
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
