package raftserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/rago-raft/rago/snapshot"
)

// Machine is the user's replicated state machine. Every member applies the
// same committed commands in the same order, so Apply must be
// deterministic: its result and its effect on the state may depend only on
// the state and the command (not on time, randomness, map order or other
// input), or replicas diverge.
//
// Apply runs on the server's goroutine, one command at a time; a machine
// needs no locks unless it shares state with other goroutines itself. It
// should not block: every command of the cluster waits behind it.
type Machine interface {
	// Apply applies one committed command and returns the reply that the
	// caller of ProcessCommand (or the pipeline's notify process) gets.
	//
	// cmd is valid only during the call and must not be modified: it may
	// share memory with other log entries (the WAL's mem tables keep
	// payloads in shared chunks), so a machine that keeps bytes of it must
	// copy them, or one kept slice holds a whole chunk in memory.
	Apply(ctx *ApplyContext, cmd []byte) []byte
}

// Querier is implemented by machines that answer read-only queries sent as
// bytes, which can travel to a leader on another node (ConsistentQuery,
// LeaderQuery, LocalQuery). A query must not change the state.
type Querier interface {
	Query(q []byte) ([]byte, error)
}

// ApplyContext describes the command being applied, and records the
// effects the machine asks for (see Effects): ctx.Send, ctx.Monitor,
// ctx.SetTimer and the others.
type ApplyContext struct {
	// Index and Term of the command's log entry.
	Index uint64
	Term  uint64
	// MachineVersion is the cluster's machine version in effect at Index:
	// apply the command with that version's logic (see Versioned). It is 0
	// for machines that are not Versioned.
	MachineVersion uint64
	Effects

	rejected error // see Reject
}

// Reject answers the command's caller with an error instead of a reply:
// the caller gets an error that wraps ErrMachine and carries err's text
// (the text crosses the network, err's identity does not). The reply Apply
// returns is then ignored. Reject is about the answer only: a machine that
// rejects a command should leave its state as it found it, and effects it
// recorded for the command still run.
func (c *ApplyContext) Reject(err error) {
	if err == nil {
		err = errors.New("command rejected")
	}
	c.rejected = err
}

// Snapshotter is implemented by machines whose state can be snapshotted,
// so that the log does not grow forever and a member far behind catches up
// with one transfer instead of replaying everything. A machine that is
// not a Snapshotter keeps its whole log.
//
// When is up to the machine and the server together: the machine records
// Effects.ReleaseCursor(ctx.Index) while applying a command after which
// its state stands on its own, and the server's SnapshotPolicy decides
// whether to snapshot there. Then, in the same step, the server calls
// Snapshot, hands the view to the node's snapshot writer and goes on
// applying; once the file is durable (checksummed, fsynced, renamed) the
// log up to the index is dropped.
type Snapshotter interface {
	// Snapshot returns a point-in-time view of the state as it is now,
	// right after the command being applied. It runs on the server's
	// goroutine and must return quickly: capture an immutable view (a
	// persistent structure's root, a frozen copy-on-write generation, or a
	// copy of a small state) and let the returned Source write it later on
	// another goroutine while Apply goes on. See snapshot.Source for the
	// threading rules. An error (or a panic) skips this snapshot.
	Snapshot() (snapshot.Source, error)
	// Restore loads a state that a Source of this machine wrote, reading r
	// to io.EOF. The server calls it on a machine fresh from the factory,
	// on its goroutine, before any Apply: at start (the newest snapshot
	// that verifies) and when it installs a snapshot from the leader. An
	// error stops the server: it restarts, and gives up if restoring keeps
	// failing.
	Restore(r io.Reader) error
}

// Versioned is implemented by machines whose logic changes from one
// release of their code to the next (Ra's machine versions). Members of a
// cluster may run different releases during a rolling upgrade, yet must
// apply every command identically, so the version in effect is part of
// the log: the leader commits a version bump once a quorum of voters runs
// code that supports it, every member switches at that index, and a member
// whose code is older stops applying just before the bump (it keeps
// replicating) until it is upgraded.
//
// The machine keeps the logic of every version it supports and applies
// each command with the logic of ApplyContext.MachineVersion.
type Versioned interface {
	// Version is the highest machine version this code implements.
	// Versions start at 0 (the version of machines that are not
	// Versioned).
	Version() uint64
	// MigrateVersion is applied, like a command, at the log index where
	// the cluster switches from version from to ctx.MachineVersion: it
	// converts the state, deterministically, and may record effects.
	MigrateVersion(ctx *ApplyContext, from uint64)
}

// MachineFactory builds a machine's initial state from its configuration.
// A node registers one factory per machine kind (SystemConfig.Machines), so
// that it can rebuild every server's machine after a restart.
type MachineFactory func(config []byte) (Machine, error)

// MachineSpec names a machine kind registered on every node that hosts a
// member, and the configuration its factory gets.
type MachineSpec struct {
	Kind   string
	Config []byte
}

// Codec converts values of T to bytes and back, for the typed helpers.
// Decode's b, like Machine.Apply's cmd, is valid only during the call: a
// value that keeps bytes of it must hold a copy.
type Codec[T any] interface {
	Encode(v T) ([]byte, error)
	Decode(b []byte) (T, error)
}

// JSON is a Codec that uses encoding/json.
type JSON[T any] struct{}

// Encode implements Codec.
func (JSON[T]) Encode(v T) ([]byte, error) { return json.Marshal(v) }

// Decode implements Codec.
func (JSON[T]) Decode(b []byte) (T, error) {
	var v T
	err := json.Unmarshal(b, &v)
	return v, err
}

// TypedMachine is a Machine over Go types: commands of type C and replies
// of type R. Wrap it with NewTypedMachine; clients use TypedClient.
type TypedMachine[C, R any] interface {
	Apply(ctx *ApplyContext, cmd C) R
}

type typedMachine[C, R any] struct {
	m       TypedMachine[C, R]
	cmds    Codec[C]
	replies Codec[R]
}

// NewTypedMachine adapts m to Machine with the given codecs. If m also
// has a byte query method, Query(q []byte) ([]byte, error), the adapted
// machine is a Querier that passes queries to it.
func NewTypedMachine[C, R any](m TypedMachine[C, R], cmds Codec[C], replies Codec[R]) Machine {
	return &typedMachine[C, R]{m: m, cmds: cmds, replies: replies}
}

// Apply decodes the command, applies it and encodes the reply. A command
// that does not decode (a client bug) or a reply that does not encode is
// rejected (ApplyContext.Reject): the caller gets an error, never a zero
// value. The reply bytes are the reply codec's, so any client can decode
// them with it.
func (t *typedMachine[C, R]) Apply(ctx *ApplyContext, cmd []byte) []byte {
	c, err := t.cmds.Decode(cmd)
	if err != nil {
		ctx.Reject(fmt.Errorf("command at index %d does not decode: %w", ctx.Index, err))
		return nil
	}
	b, err := t.replies.Encode(t.m.Apply(ctx, c))
	if err != nil {
		ctx.Reject(fmt.Errorf("reply at index %d does not encode: %w", ctx.Index, err))
		return nil
	}
	return b
}

// Query passes q to the typed machine's Query method; a machine without
// one answers ErrMachine.
func (t *typedMachine[C, R]) Query(q []byte) ([]byte, error) {
	tq, ok := t.m.(interface {
		Query(q []byte) ([]byte, error)
	})
	if !ok {
		return nil, fmt.Errorf("%w: machine %T answers no queries", ErrMachine, t.m)
	}
	return tq.Query(q)
}

// Unwrap returns the wrapped typed machine, for local query functions.
func (t *typedMachine[C, R]) Unwrap() any { return t.m }

// decodeTypedReply decodes a typed machine's reply.
func decodeTypedReply[R any](b []byte, replies Codec[R]) (R, error) {
	r, err := replies.Decode(b)
	if err != nil {
		var zero R
		return zero, fmt.Errorf("%w: reply does not decode: %w", ErrMachine, err)
	}
	return r, nil
}

// TypedClient sends typed commands to a cluster whose machine was built
// with NewTypedMachine and the same codecs.
type TypedClient[C, R any] struct {
	System  *System
	Cmds    Codec[C]
	Replies Codec[R]
}

// Process is System.ProcessCommand for typed commands and replies. A
// command the machine could not decode comes back as ErrMachine.
func (c TypedClient[C, R]) Process(ctx context.Context, via ServerID, cmd C) (R, ServerID, error) {
	var zero R
	b, err := c.Cmds.Encode(cmd)
	if err != nil {
		return zero, ServerID{}, fmt.Errorf("%w: command does not encode: %w", ErrInvalidConfig, err)
	}
	reply, leader, err := c.System.ProcessCommand(ctx, via, b)
	if err != nil {
		return zero, leader, err
	}
	r, err := decodeTypedReply(reply, c.Replies)
	return r, leader, err
}
