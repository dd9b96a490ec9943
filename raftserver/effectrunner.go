package raftserver

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/raftserver/core"
)

// effectRunner carries out the effects a leader's machine records, and owns
// what they set up: monitors of processes and nodes, named timers, and the
// machine's tick. All of it belongs to one leadership and goes when it ends
// (drop); followers run no effects.
type effectRunner struct {
	env       hostEnv
	logger    *slog.Logger
	tickEvery time.Duration

	mons      map[actor.Ref]monitorID
	monRefs   map[monitorID]actor.Ref
	nodes     map[string]bool
	timers    map[string]machineTimer
	timerGen  uint64
	tickArmed bool
	tickTimer timerID
}

// maxReadLogDepth bounds ReadLog callbacks that record ReadLog effects.
const maxReadLogDepth = 4

// run carries out effs in order; read gives ReadLog callbacks the commands
// they asked for.
func (r *effectRunner) run(effs []effect, depth int, read func([]uint64) [][]byte) {
	for _, e := range effs {
		switch e.kind {
		case effSend:
			if err := r.env.send(e.to, e.msg); err != nil {
				r.logger.Warn("machine effect: send failed", "to", e.to.String(), "err", err)
			}
		case effCall:
			r.safely("call", e.fn)
		case effMonitor:
			if _, ok := r.mons[e.to]; !ok {
				if r.mons == nil {
					r.mons, r.monRefs = map[actor.Ref]monitorID{}, map[monitorID]actor.Ref{}
				}
				mon := r.env.monitor(e.to)
				r.mons[e.to], r.monRefs[mon] = mon, e.to
			}
		case effDemonitor:
			if mon, ok := r.mons[e.to]; ok {
				r.env.demonitor(mon)
				delete(r.mons, e.to)
				delete(r.monRefs, mon)
			}
		case effMonitorNode:
			if !r.nodes[e.node] {
				if r.nodes == nil {
					r.nodes = map[string]bool{}
				}
				r.nodes[e.node] = true
				r.env.monitorNode(e.node)
			}
		case effDemonitorNode:
			if r.nodes[e.node] {
				delete(r.nodes, e.node)
				r.env.demonitorNode(e.node)
			}
		case effTimer:
			if t, ok := r.timers[e.name]; ok {
				r.env.cancelTimer(t.ref)
				delete(r.timers, e.name)
			}
			if e.after > 0 {
				if r.timers == nil {
					r.timers = map[string]machineTimer{}
				}
				r.timerGen++
				t := machineTimer{name: e.name, gen: r.timerGen}
				t.ref = r.env.after(e.after, machineTimer{name: e.name, gen: t.gen})
				r.timers[e.name] = t
			}
		case effReadLog:
			out := &Effects{}
			cmds := read(e.indexes)
			r.safely("read log", func() { e.read(cmds, out) })
			if depth < maxReadLogDepth {
				r.run(out.list, depth+1, read)
			}
		}
	}
}

// safely runs a machine callback; a panic is logged, not spread.
func (r *effectRunner) safely(what string, fn func()) {
	defer func() {
		if p := recover(); p != nil {
			r.logger.Error("machine effect panicked", "effect", what, "panic", fmt.Sprint(p))
		}
	}()
	fn()
}

// drop undoes everything the effects set up: leadership ended.
func (r *effectRunner) drop() {
	for mon := range r.monRefs {
		r.env.demonitor(mon)
	}
	for node := range r.nodes {
		r.env.demonitorNode(node)
	}
	for _, t := range r.timers {
		r.env.cancelTimer(t.ref)
	}
	r.mons, r.monRefs, r.nodes, r.timers = nil, nil, nil, nil
	if r.tickArmed {
		r.env.cancelTimer(r.tickTimer)
		r.tickArmed = false
	}
}

// armTick arms the machine's tick unless it is armed.
func (r *effectRunner) armTick() {
	if !r.tickArmed {
		r.tickTimer = r.env.after(r.tickEvery, machineTickMsg{})
		r.tickArmed = true
	}
}

// processDown returns the process of an effect's monitor that fired.
func (r *effectRunner) processDown(id monitorID) (actor.Ref, bool) {
	ref, ok := r.monRefs[id]
	if ok {
		delete(r.monRefs, id)
		delete(r.mons, ref)
	}
	return ref, ok
}

// watchesNode reports whether an effect monitors node.
func (r *effectRunner) watchesNode(node string) bool { return r.nodes[node] }

// timerFired reports whether m is the machine timer in force, and forgets
// it.
func (r *effectRunner) timerFired(m machineTimer) bool {
	t, ok := r.timers[m.name]
	if !ok || t.gen != m.gen {
		return false
	}
	delete(r.timers, m.name)
	return true
}

// The server's side of effects: what the machine hears and when effects
// run.

// observe commits an observation to the log, if this server leads.
func (s *server) observe(o Observation) {
	if s.raft.Role() != core.RoleLeader {
		return
	}
	s.step(core.Command{Data: encodeObservation(o)})
}

// carryOutEffects runs the effects of the entries just applied, on the
// leader only; followers drop them.
func (s *server) carryOutEffects() {
	if len(s.mh.pending) == 0 {
		return
	}
	effs := s.mh.pending
	s.mh.pending = nil
	if s.raft.Role() == core.RoleLeader {
		s.effects.run(effs, 0, s.readCommands)
	}
}

// readCommands returns the user data of the commands at indexes (nil for
// an index that holds no command or is no longer in the log).
func (s *server) readCommands(indexes []uint64) [][]byte {
	out := make([][]byte, len(indexes))
	for i, idx := range indexes {
		if idx == 0 || idx > s.raft.LastIndex() {
			continue
		}
		ents, err := s.raft.Entries(idx, idx+1, 0)
		if err != nil || len(ents) == 0 || ents[0].Type != core.EntryNormal {
			continue
		}
		if cmd, err := decodeCommand(ents[0].Data); err == nil && cmd.kind != cmdObservation {
			out[i] = cmd.data
		}
	}
	return out
}

// leadershipChanged drops the leader's effect state when leadership is
// lost, and lets the machine re-create it when it is won.
func (s *server) leadershipChanged(role core.Role) {
	if role != core.RoleLeader {
		s.effects.drop()
	}
	if se, ok := capability[StateEnterer](s.mh.machine); ok {
		out := &Effects{}
		s.effects.safely("state enter", func() { se.StateEnter(roleOf(role), out) })
		if role == core.RoleLeader {
			s.effects.run(out.list, 0, s.readCommands)
		}
	}
	if role == core.RoleLeader {
		s.armMachineTick()
	}
}

func roleOf(r core.Role) Role {
	switch r {
	case core.RoleLeader:
		return RoleLeader
	case core.RoleCandidate:
		return RoleCandidate
	case core.RolePreVote:
		return RolePreVote
	}
	return RoleFollower
}

func (s *server) armMachineTick() {
	if _, ok := capability[Ticker](s.mh.machine); ok {
		s.effects.armTick()
	}
}

func (s *server) machineTick() {
	s.effects.tickArmed = false
	t, ok := capability[Ticker](s.mh.machine)
	if !ok || s.raft.Role() != core.RoleLeader {
		return
	}
	out := &Effects{}
	s.effects.safely("tick", func() { t.Tick(s.env.now(), out) })
	s.effects.run(out.list, 0, s.readCommands)
	s.armMachineTick()
}
