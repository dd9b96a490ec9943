package raftserver

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"

	"github.com/rago-raft/rago/raftserver/core"
)

// machineHost runs a server's machine. It applies committed entries to it
// with the client sessions that make commands exactly-once and the machine
// version in effect, and rebuilds it by replaying the log around a command
// that made it panic (a poison command). It sends nothing: what the machine
// asked for while applying live entries waits in pending (effects) and
// releaseAt (a release cursor) for the server to take.
type machineHost struct {
	logger *slog.Logger
	// fresh machines and session tables
	newMachine  func() (Machine, error)
	newSessions func() *sessionTable
	// entries reads committed entries lo..hi-1 (at least one);
	// firstIndex is the first the log holds.
	entries    func(lo, hi uint64) ([]core.Entry, error)
	firstIndex func() uint64
	// restore restores a machine from the newest durable snapshot at or
	// below upTo, if there is one.
	restore func(upTo uint64) (Machine, core.Snapshot, *sessionTable, bool, error)

	machine  Machine
	sessions *sessionTable
	// poisoned holds the indexes of commands that made the machine panic:
	// a rebuild replays the log around them. Nil until a command panics.
	poisoned map[uint64]bool
	// members and version are the config and the machine version in
	// effect at the applied index (members empty: the initial members),
	// which a snapshot records.
	members core.Membership
	version uint64
	// effectsFloor: entries up to this index were applied before the last
	// restart (as far as the meta store knows), so their effects are not
	// carried out again.
	effectsFloor  uint64
	releaseCursor uint64   // highest ReleaseCursor index seen
	pending       []effect // effects of the entries being applied
	// releaseAt is the index of the entry last applied if the machine
	// released the log up to it.
	releaseAt uint64
	// skipThrough: the machine was rebuilt from a snapshot at this index,
	// ahead of the entries being applied, which it passes over.
	skipThrough uint64
}

// fresh makes the machine a new, empty one.
func (h *machineHost) fresh() error {
	m, err := h.newMachine()
	if err != nil {
		return err
	}
	h.machine, h.sessions = m, h.newSessions()
	h.members, h.version = core.Membership{}, 0
	return nil
}

// reset makes the machine one restored from the snapshot desc.
func (h *machineHost) reset(m Machine, desc core.Snapshot, sessions *sessionTable) {
	h.machine, h.sessions = m, sessions
	h.skipThrough = 0
	h.members, h.version = desc.Members, desc.MachineVersion
}

// forgetPoisonedThrough forgets the poison commands a snapshot at index
// covers: no rebuild replays them again.
func (h *machineHost) forgetPoisonedThrough(index uint64) {
	for i := range h.poisoned {
		if i <= index {
			delete(h.poisoned, i)
		}
	}
}

// supportedVersion is the highest machine version this server's code runs.
func (h *machineHost) supportedVersion() uint64 {
	if v, ok := capability[Versioned](h.machine); ok {
		return v.Version()
	}
	return 0
}

// applyEntry applies one committed entry. live is false while a rebuild
// replays the log: nothing leaves the server then.
func (h *machineHost) apply(e core.Entry, live bool) (reply []byte, err error) {
	if e.Index <= h.skipThrough {
		return nil, nil // the machine's state already holds it (rebuild)
	}
	switch e.Type {
	case core.EntryNormal:
		reply, err = h.applyNormal(e, live)
	case core.EntryConfig:
		m, derr := core.DecodeMembership(e.Data)
		if derr != nil {
			return nil, fmt.Errorf("%w: config entry %d: %w", ErrStorage, e.Index, derr)
		}
		h.members = m
	case core.EntryMachineVersion:
		reply, err = h.applyVersion(e, live)
	}
	if e.Index%sessionExpiryEvery == 0 {
		h.sessions.expire(e.Index)
	}
	return reply, err
}

func (h *machineHost) applyNormal(e core.Entry, live bool) ([]byte, error) {
	cmd, err := decodeCommand(e.Data)
	if err != nil {
		// Every member holds the same bytes and fails the same way.
		h.logger.Error("log entry does not decode", "index", e.Index, "err", err)
		return nil, fmt.Errorf("%w: entry %d: %v", ErrMachine, e.Index, err)
	}
	switch cmd.kind {
	case cmdSession:
		if reply, err, known := h.sessions.lookup(cmd.client, cmd.seq); known {
			return reply, err
		}
		reply, err := h.runMachine(e, live, func(ctx *ApplyContext) []byte { return h.machine.Apply(ctx, cmd.data) })
		if errors.Is(err, ErrStorage) {
			return nil, err
		}
		h.sessions.record(e.Index, cmd.client, cmd.seq, cmd.responded, reply, err)
		return reply, err
	case cmdObservation:
		o, ok := capability[Observer](h.machine)
		if !ok {
			return nil, nil
		}
		return h.runMachine(e, live, func(ctx *ApplyContext) []byte { o.Observe(ctx, cmd.obs); return nil })
	}
	return h.runMachine(e, live, func(ctx *ApplyContext) []byte { return h.machine.Apply(ctx, cmd.data) })
}

// runMachine runs one machine callback for entry e. A panic is a poison
// command: the caller gets ErrMachine, the machine is rebuilt to its state
// before e by replaying the log, and the index is remembered so that
// later rebuilds skip it. Every member meets the same panic at the same
// index and does the same, so replicas never diverge.
func (h *machineHost) runMachine(e core.Entry, live bool, run func(*ApplyContext) []byte) ([]byte, error) {
	if h.poisoned[e.Index] {
		return nil, fmt.Errorf("%w: command at index %d panicked", ErrMachine, e.Index)
	}
	ctx := &ApplyContext{Index: e.Index, Term: e.Term, MachineVersion: h.version}
	reply, panicked := callMachine(ctx, run)
	if panicked != nil {
		if h.poisoned == nil {
			h.poisoned = map[uint64]bool{}
		}
		h.poisoned[e.Index] = true
		if live {
			h.logger.Error("machine panicked applying a command; its state is rebuilt without it",
				"index", e.Index, "panic", fmt.Sprint(panicked.value), "stack", panicked.stack)
		}
		if err := h.rebuild(e.Index - 1); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: command at index %d panicked: %v", ErrMachine, e.Index, panicked.value)
	}
	for _, eff := range ctx.list {
		// The snapshot hint counts on every member, not only the leader.
		if eff.kind == effReleaseCursor {
			h.releaseCursor = max(h.releaseCursor, eff.index)
			if live && eff.index >= e.Index {
				h.releaseAt = e.Index
			}
		}
	}
	if live && e.Index > h.effectsFloor {
		h.pending = append(h.pending, ctx.list...)
	}
	if ctx.rejected != nil {
		return nil, fmt.Errorf("%w: %s", ErrMachine, ctx.rejected)
	}
	return reply, nil
}

type machinePanic struct {
	value any
	stack string
}

func callMachine(ctx *ApplyContext, run func(*ApplyContext) []byte) (reply []byte, p *machinePanic) {
	defer func() {
		if r := recover(); r != nil {
			p = &machinePanic{value: r, stack: string(debug.Stack())}
		}
	}()
	return run(ctx), nil
}

// rebuild replaces the machine and the session table by fresh ones that
// replayed the log up to index upTo, starting from the server's snapshot.
// Replays skip the commands known to panic, so they do not panic again.
func (h *machineHost) rebuild(upTo uint64) error {
	from := uint64(1)
	m, desc, sessions, ok, err := h.restore(upTo)
	switch {
	case err != nil:
		return fmt.Errorf("%w: rebuilding the machine: %w", ErrStorage, err)
	case ok:
		h.reset(m, desc, sessions)
		from = desc.Index + 1
	case h.firstIndex() > 1:
		// No snapshot at or below upTo, and the log no longer starts at 1:
		// the only snapshot is a newer one received from a leader (staged,
		// it replaced ours), and the log was compacted through ours. The
		// state before upTo is gone; start again from the newer snapshot,
		// as a restart would, and pass over the entries it covers.
		m, desc, sessions, ok, err := h.restore(math.MaxUint64)
		if err != nil || !ok {
			return fmt.Errorf("%w: rebuilding the machine: no snapshot at or below %d, the log starts at %d (%v)",
				ErrStorage, upTo, h.firstIndex(), err)
		}
		h.reset(m, desc, sessions)
		h.skipThrough = desc.Index
		h.logger.Warn("machine rebuilt from a newer snapshot; the entries it covers are passed over",
			"poisoned", upTo+1, "snapshot", desc.Index)
		return nil
	default:
		if err := h.fresh(); err != nil {
			return fmt.Errorf("%w: rebuilding the machine: %w", ErrStorage, err)
		}
	}
	for lo := from; lo <= upTo; {
		ents, err := h.entries(lo, upTo+1)
		if err != nil {
			return fmt.Errorf("%w: rebuilding the machine: %w", ErrStorage, err)
		}
		for _, e := range ents {
			if _, err := h.apply(e, false); errors.Is(err, ErrStorage) {
				return err
			}
		}
		lo = ents[len(ents)-1].Index + 1
	}
	return nil
}

// applyVersion applies a machine version bump: from this index on the
// machine runs the new version's logic, after migrating its state.
func (h *machineHost) applyVersion(e core.Entry, live bool) ([]byte, error) {
	v, err := core.DecodeMachineVersion(e.Data)
	if err != nil {
		return nil, fmt.Errorf("%w: version entry %d: %w", ErrStorage, e.Index, err)
	}
	from := h.version
	h.version = v
	vm, ok := capability[Versioned](h.machine)
	if !ok || v == from {
		return nil, nil
	}
	if live {
		h.logger.Info("machine version changes", "index", e.Index, "from", from, "to", v)
	}
	return h.runMachine(e, live, func(ctx *ApplyContext) []byte { vm.MigrateVersion(ctx, from); return nil })
}

// userMachine returns the machine as its factory built it: the typed
// machine a NewTypedMachine adapter wraps, or m itself.
func userMachine(m Machine) any {
	if u, ok := m.(interface{ Unwrap() any }); ok {
		return u.Unwrap()
	}
	return m
}

// capability returns the machine, or the typed machine it wraps, as T.
func capability[T any](m Machine) (T, bool) {
	if t, ok := m.(T); ok {
		return t, true
	}
	if u, ok := m.(interface{ Unwrap() any }); ok {
		if t, ok := u.Unwrap().(T); ok {
			return t, true
		}
	}
	var zero T
	return zero, false
}
