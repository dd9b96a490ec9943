package raftserver

import (
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/raftserver/core"
)

// hsEnv is a member's hostEnv: the simulated network, clock, timers and
// monitors of one incarnation.
type hsEnv struct {
	w      *hsWorld
	m      *hsMember
	inc    int
	nextID uint64
	timers map[timerID]bool
	mons   map[monitorID]int // -> the member monitored
}

func (e *hsEnv) live() bool { return e.m.up && e.m.inc == e.inc }

func (e *hsEnv) self() actor.Ref { return Ref(e.m.id) }

func (e *hsEnv) send(to actor.Ref, msg actor.Message) error {
	if !e.live() {
		return nil
	}
	return e.w.send(e.m, to, msg)
}

func (e *hsEnv) reply(rt actor.ReplyTo, msg actor.Message) {
	if e.live() {
		e.w.replyToClient(rt, msg)
	}
}

func (e *hsEnv) after(d time.Duration, msg actor.Message) timerID {
	e.nextID++
	id := timerID(e.nextID)
	e.timers[id] = true
	e.w.schedule(max(1, d.Milliseconds()), hsTimer{m: e.m.idx, inc: e.inc, id: id, msg: msg})
	return id
}

func (e *hsEnv) cancelTimer(id timerID) { delete(e.timers, id) }

func (e *hsEnv) monitor(ref actor.Ref) monitorID {
	e.nextID++
	id := monitorID(e.nextID)
	ti, ok := e.w.byName[ref.Name]
	if !ok {
		return id
	}
	e.mons[id] = ti
	if !e.w.members[ti].up {
		e.w.schedule(1+e.w.rng.Int64N(10), hsDown{m: e.m.idx, inc: e.inc, id: id})
	}
	return id
}

func (e *hsEnv) demonitor(id monitorID) { delete(e.mons, id) }
func (e *hsEnv) monitorNode(string)     {}
func (e *hsEnv) demonitorNode(string)   {}
func (e *hsEnv) now() time.Time         { return time.UnixMilli(1_700_000_000_000 + e.w.now) }

func (e *hsEnv) exit(reason actor.Reason) {
	if e.live() && !e.m.exiting {
		e.m.exiting = true
		e.m.removedAt = e.m.host.raft.Status().MembersIndex
		e.w.schedule(0, hsExit{m: e.m.idx, inc: e.inc, reason: reason})
	}
}

// hsState is a member's statePort, with the sabotage that forgets votes.
type hsState struct {
	*simState
	w *hsWorld
}

func (s hsState) saveVote(term uint64, vote ServerID) error {
	if s.w.opts.Sabotage.ForgetVote {
		vote = ServerID{}
	}
	return s.simState.saveVote(term, vote)
}

// hsNode is a member's nodeServices.
type hsNode struct {
	w *hsWorld
	m *hsMember
}

func (n *hsNode) newMachine(MachineSpec) (Machine, error) {
	return &simKV{kvMachine: kvMachine{data: map[string]string{}}, w: n.w, m: n.m, version: n.m.version}, nil
}

// recordLeader checks election safety: one leader per term.
func (n *hsNode) recordLeader(_ string, leader ServerID, _ []ServerID, term uint64) {
	if leader.IsZero() {
		return
	}
	if prev, ok := n.w.leaders[term]; ok && prev != leader {
		n.w.violate("two leaders in term %d: %s and %s", term, prev, leader)
		return
	}
	if _, ok := n.w.leaders[term]; !ok {
		n.w.stats.Elections++
		n.w.leaders[term] = leader
	}
}

func (n *hsNode) watchNode(_ actor.Ref, node string) error {
	n.m.watching[node] = true
	return nil
}

func (n *hsNode) unwatchNode(_ actor.Ref, node string) {
	delete(n.m.watching, node)
	delete(n.m.told, node)
}

func (n *hsNode) electionDelay(_ time.Time, d time.Duration) time.Duration { return d }

// refusedPeerMessage counts a message the host refused: in the simulation
// every sender is honest, so these are messages from servers the
// receiver does not know (a removed member, or one added since the
// receiver's configuration).
func (n *hsNode) refusedPeerMessage(server, from ServerID, src string, msg actor.Message, why string) {
	n.w.stats.RefusedPeer++
	n.w.tracef("refused %s->%s %s: %s", from.Name, server.Name, messageName(msg), why)
}

// simKV is the simulation's machine: the test machine at the version its
// member's code supports. It checks that every member applies the same
// command at each index, never under a machine version its code does not
// support, and switches versions at the same index as the others.
type simKV struct {
	kvMachine
	w       *hsWorld
	m       *hsMember
	version uint64
}

func (k *simKV) Apply(ctx *ApplyContext, cmd []byte) []byte {
	if ctx.MachineVersion > k.version {
		k.w.violate("member %s applies %d under machine version %d, its code supports %d", k.m.id, ctx.Index, ctx.MachineVersion, k.version)
	}
	if prev, ok := k.w.applied[ctx.Index]; ok && prev != string(cmd) {
		k.w.violate("member %s applies %q at %d, another member applied %q", k.m.id, cmd, ctx.Index, prev)
	}
	k.w.applied[ctx.Index] = string(cmd)
	// Every put's value is unique: applied at two indexes, a command took
	// effect twice (a session retry the host did not recognise).
	if f := strings.Fields(string(cmd)); len(f) == 3 && f[0] == "set" {
		if at, ok := k.w.values[f[2]]; ok && at != ctx.Index {
			k.w.violate("member %s: command %q applied twice, at %d and %d", k.m.id, cmd, at, ctx.Index)
		}
		k.w.values[f[2]] = ctx.Index
	}
	defer k.checkState(ctx.Index)
	return k.kvMachine.Apply(ctx, cmd)
}

// checkState: every member's machine holds the same state after applying
// the command at index (a panic leaves none to compare: the rebuild does).
func (k *simKV) checkState(index uint64) {
	if k.applied != index {
		return
	}
	d := kvDigest(k.data)
	if prev, ok := k.w.digests[index]; ok && prev != d {
		k.w.violate("member %s holds %s after %d, another member held %s", k.m.id, d, index, prev)
	}
	k.w.digests[index] = d
}

// Restore checks that a snapshot holds the state every member had after
// the command it ends with.
func (k *simKV) Restore(r io.Reader) error {
	if err := k.kvMachine.Restore(r); err != nil {
		return err
	}
	if prev, ok := k.w.digests[k.applied]; ok && k.applied > 0 && prev != kvDigest(k.data) {
		k.w.violate("member %s restores a snapshot holding %s after %d, members held %s", k.m.id, kvDigest(k.data), k.applied, prev)
	}
	return nil
}

// hsLog is a member's logPort: its simLog, with the check that no two
// logs ever hold different entries at the same index and term (log
// matching).
type hsLog struct {
	*simLog
	w *hsWorld
	m *hsMember
}

func (l hsLog) append(ents []core.Entry) error {
	for _, e := range ents {
		k := [2]uint64{e.Index, e.Term}
		v := string(rune(e.Type)) + string(e.Data)
		if prev, ok := l.w.entries[k]; ok && prev != v {
			l.w.violate("member %s appends an entry at %d term %d that another log holds differently", l.m.id, e.Index, e.Term)
		}
		l.w.entries[k] = v
	}
	return l.simLog.append(ents)
}

// Version and MigrateVersion make simKV Versioned.
func (k *simKV) Version() uint64 { return k.version }

func (k *simKV) MigrateVersion(ctx *ApplyContext, from uint64) {
	v := ctx.MachineVersion
	if v > k.version {
		k.w.violate("member %s switches to machine version %d at %d, its code supports %d", k.m.id, v, ctx.Index, k.version)
		return
	}
	if at, ok := k.w.bumps[v]; ok && at != ctx.Index {
		k.w.violate("member %s switches to machine version %d at %d, another member at %d", k.m.id, v, ctx.Index, at)
		return
	}
	if _, ok := k.w.bumps[v]; !ok {
		k.w.bumps[v] = ctx.Index
		k.w.stats.Bumps++
	}
}

// corruptSnapshot flips a byte in the middle of m's newest snapshot file,
// as a bad disk would: the store must find it at start and set it aside.
func (w *hsWorld) corruptSnapshot(m *hsMember) bool {
	dir := path.Join("/data/snapshots", m.uid)
	names, err := m.fs.List(dir)
	if err != nil {
		return false
	}
	slices.Sort(names)
	var newest string
	for _, n := range names {
		if strings.HasSuffix(n, ".snap") {
			newest = n
		}
	}
	if newest == "" {
		return false
	}
	name := path.Join(dir, newest)
	f, err := m.fs.Open(name)
	if err != nil {
		return false
	}
	data, err := io.ReadAll(f)
	_ = f.Close()
	if err != nil || len(data) < 2 {
		return false
	}
	data[len(data)/2] ^= 0x40
	g, err := m.fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return false
	}
	defer g.Close()
	if _, err := g.Write(data); err != nil {
		return false
	}
	return g.Sync() == nil
}
