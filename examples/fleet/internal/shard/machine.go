// Package shard is the machine of one shard of the fleet example's
// key-value store: a replicated map from keys to values, with the log
// index of each key's last write as its revision. Keys are spread over
// the shards by Of (FNV-1a), so every node routes a key to the same shard.
//
// Commands, queries and their answers are JSON: the machine is small and
// the example is for reading, not for speed.
package shard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/rago-raft/rago/raftserver"
	"github.com/rago-raft/rago/snapshot"
)

// Kind is the machine kind of the shards (and of the example's node
// directory, which is a map too).
const Kind = "fleetkv.map"

// MaxKeyBytes bounds a key: it travels in every command and answer.
const MaxKeyBytes = 1024

// Errors of the machine and of its checks.
var (
	// ErrInvalid: a command, query or configuration that does not decode
	// or breaks a rule (an empty key, an unknown operation).
	ErrInvalid = errors.New("shard: invalid")
)

// Of returns the shard of key among shards: FNV-1a of the key, modulo.
// Wire format of the store: changing it sends keys to other shards.
func Of(key string, shards int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(shards))
}

// Name returns the group name of shard i: kv-0000, kv-0001, ...
func Name(i int) string { return fmt.Sprintf("kv-%04d", i) }

// Config is the configuration each shard's group is created with (its
// MachineSpec.Config). It records the shard count in the fleet's books,
// so that a node started with another count can see the mismatch.
type Config struct {
	Shard  int `json:"shard"`
	Shards int `json:"shards"`
}

// Spec returns the machine spec of shard i of shards.
func Spec(i, shards int) raftserver.MachineSpec {
	b, _ := json.Marshal(Config{Shard: i, Shards: shards})
	return raftserver.MachineSpec{Kind: Kind, Config: b}
}

// ParseConfig reads a Config from a MachineSpec.Config.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	if len(b) == 0 {
		return c, nil
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%w: config: %w", ErrInvalid, err)
	}
	return c, nil
}

// ValidateKey says what is wrong with a key, if anything.
func ValidateKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: an empty key", ErrInvalid)
	case len(key) > MaxKeyBytes:
		return fmt.Errorf("%w: a key of %d bytes, the limit is %d", ErrInvalid, len(key), MaxKeyBytes)
	}
	return nil
}

// The operations of commands and queries.
const (
	OpPut    = "put"
	OpDelete = "delete"
	OpGet    = "get"
	OpCount  = "count"
	OpList   = "list"
)

// MaxList bounds the items of one list query.
const MaxList = 1000

// Command is a write.
type Command struct {
	Op    string `json:"op"`
	Key   string `json:"key"`
	Value []byte `json:"value,omitempty"`
}

// Result answers a Command.
type Result struct {
	// Revision is the log index of the write (0 for a delete of a key
	// that was not there).
	Revision uint64 `json:"revision"`
	// Created: a put of a key that was not there; Found: a delete of one
	// that was.
	Created bool `json:"created,omitempty"`
	Found   bool `json:"found,omitempty"`
	// Error is why the command was refused; the state did not change.
	Error string `json:"error,omitempty"`
}

// Query is a read.
type Query struct {
	Op  string `json:"op"`
	Key string `json:"key,omitempty"`
	// Prefix selects the keys of a list.
	Prefix string `json:"prefix,omitempty"`
}

// Item is a key and its value in a list.
type Item struct {
	Key      string `json:"key"`
	Value    []byte `json:"value"`
	Revision uint64 `json:"revision"`
}

// Answer answers a Query.
type Answer struct {
	Found    bool   `json:"found,omitempty"`
	Value    []byte `json:"value,omitempty"`
	Revision uint64 `json:"revision,omitempty"`
	Keys     int    `json:"keys"`
	// Items are a list's keys with the prefix, sorted, at most MaxList.
	Items []Item `json:"items,omitempty"`
}

type entry struct {
	Value    []byte `json:"v"`
	Revision uint64 `json:"r"`
}

// Machine is a shard's state. Apply runs on the server's goroutine, one
// command at a time, and so do Query and Snapshot: no locks.
type Machine struct {
	cfg  Config
	data map[string]entry
}

// Factory is the raftserver.MachineFactory of Kind.
func Factory(config []byte) (raftserver.Machine, error) {
	c, err := ParseConfig(config)
	if err != nil {
		return nil, err
	}
	return &Machine{cfg: c, data: map[string]entry{}}, nil
}

// Apply applies a put or a delete. A command that does not decode is
// refused and changes nothing; every node refuses it alike.
func (m *Machine) Apply(ctx *raftserver.ApplyContext, b []byte) []byte {
	var c Command
	var r Result
	err := json.Unmarshal(b, &c)
	if err == nil {
		err = ValidateKey(c.Key)
	}
	switch {
	case err != nil:
		r.Error = err.Error()
	case c.Op == OpPut:
		_, had := m.data[c.Key]
		m.data[c.Key] = entry{Value: c.Value, Revision: ctx.Index}
		r = Result{Revision: ctx.Index, Created: !had}
	case c.Op == OpDelete:
		if _, had := m.data[c.Key]; had {
			delete(m.data, c.Key)
			r = Result{Revision: ctx.Index, Found: true}
		}
	default:
		r.Error = fmt.Sprintf("%v: unknown operation %q", ErrInvalid, c.Op)
	}
	// The state stands on its own after every command: the server's
	// snapshot policy decides when a snapshot is worth it.
	ctx.ReleaseCursor(ctx.Index)
	out, _ := json.Marshal(r)
	return out
}

// Query answers a get or a count.
func (m *Machine) Query(b []byte) ([]byte, error) {
	var q Query
	if err := json.Unmarshal(b, &q); err != nil {
		return nil, fmt.Errorf("%w: query: %w", ErrInvalid, err)
	}
	a := Answer{Keys: len(m.data)}
	switch q.Op {
	case OpGet:
		if e, ok := m.data[q.Key]; ok {
			a.Found, a.Value, a.Revision = true, e.Value, e.Revision
		}
	case OpCount:
	case OpList:
		for _, k := range slices.Sorted(maps.Keys(m.data)) {
			if strings.HasPrefix(k, q.Prefix) && len(a.Items) < MaxList {
				e := m.data[k]
				a.Items = append(a.Items, Item{Key: k, Value: e.Value, Revision: e.Revision})
			}
		}
	default:
		return nil, fmt.Errorf("%w: unknown query %q", ErrInvalid, q.Op)
	}
	return json.Marshal(a)
}

// snap is the snapshot's content.
type snap struct {
	Config  Config           `json:"config"`
	Entries map[string]entry `json:"entries"`
}

// Snapshot encodes the state at once: a shard holds a small part of the
// keys, so a copy is quick, and values are never modified in place (a put
// replaces the slice), so sharing them with the copy is safe.
func (m *Machine) Snapshot() (snapshot.Source, error) {
	b, err := json.Marshal(snap{Config: m.cfg, Entries: maps.Clone(m.data)})
	if err != nil {
		return nil, err
	}
	return snapshot.BytesSource(b), nil
}

// Restore loads a state Snapshot wrote.
func (m *Machine) Restore(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	var s snap
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return fmt.Errorf("%w: snapshot: %w", ErrInvalid, err)
	}
	if s.Entries == nil {
		s.Entries = map[string]entry{}
	}
	m.cfg, m.data = s.Config, s.Entries
	return nil
}

// Overview reports the key count in the server's status.
func (m *Machine) Overview() map[string]string {
	return map[string]string{"keys": fmt.Sprint(len(m.data))}
}
