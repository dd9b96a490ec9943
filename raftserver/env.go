package raftserver

import (
	"time"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/internal/smallmap"
)

// hostEnv is the world as a server's host sees it, apart from its storage
// ports: its own address, messages, timers, monitors and the clock. The
// host calls it only while it handles an input, on one goroutine. The
// actor shell implements it over actor.Context (actorEnv); a simulation
// implements it over a simulated network and clock.
type hostEnv interface {
	// self is the address of the server's process.
	self() actor.Ref
	// send delivers msg to a process, asynchronously; it may be lost.
	send(to actor.Ref, msg actor.Message) error
	// reply answers a call the host kept the caller of.
	reply(rt actor.ReplyTo, msg actor.Message)
	// after delivers msg to the host after d, unless cancelled first.
	after(d time.Duration, msg actor.Message) timerID
	// cancelTimer cancels a timer; a cancelled timer never fires.
	cancelTimer(timerID)
	// monitor watches a process: its exit comes back as a Down with this
	// id (processDown).
	monitor(actor.Ref) monitorID
	// demonitor stops a monitor; its Down never comes, even one in flight.
	demonitor(monitorID)
	// monitorNode and demonitorNode subscribe to a node's connection state
	// (actor.NodeUp and actor.NodeDown).
	monitorNode(node string)
	demonitorNode(node string)
	now() time.Time
	// exit ends the server's process after the current input.
	exit(reason actor.Reason)
}

// timerID and monitorID name the timers and monitors a hostEnv set up.
type (
	timerID   uint64
	monitorID uint64
)

// Inputs the actor shell makes of the timers and monitors of actorEnv.
type (
	// firedTimer is a timer of the host that fired; msg is what it carries.
	firedTimer struct {
		id  timerID
		msg actor.Message
	}
)

// actorEnv is the hostEnv of a server process: actor.Context, valid during
// Receive, and tables from the host's timer and monitor ids to the actor's.
// The tables are small maps: a server has a timer or two pending and
// monitors its leader or its followers, and a node may host thousands.
type actorEnv struct {
	ctx    *actor.Context
	nextID uint64
	timers smallmap.Map[timerID, actor.TimerRef]
	mons   smallmap.Map[monitorID, actor.MonitorRef]
	monIDs smallmap.Map[actor.MonitorRef, monitorID]
}

func newActorEnv() *actorEnv { return &actorEnv{} }

func (e *actorEnv) self() actor.Ref { return e.ctx.Self() }

func (e *actorEnv) send(to actor.Ref, msg actor.Message) error { return e.ctx.Send(to, msg) }

func (e *actorEnv) reply(rt actor.ReplyTo, msg actor.Message) { _ = e.ctx.Node().Reply(rt, msg) }

func (e *actorEnv) after(d time.Duration, msg actor.Message) timerID {
	e.nextID++
	id := timerID(e.nextID)
	e.timers.Set(id, e.ctx.SendAfter(d, firedTimer{id: id, msg: msg}))
	return id
}

func (e *actorEnv) cancelTimer(id timerID) {
	if ref, ok := e.timers.Delete(id); ok {
		e.ctx.CancelTimer(ref)
	}
}

// fired reports whether a timer's message is still wanted, and forgets
// the timer.
func (e *actorEnv) fired(id timerID) bool {
	_, ok := e.timers.Delete(id)
	return ok
}

func (e *actorEnv) monitor(ref actor.Ref) monitorID {
	e.nextID++
	id := monitorID(e.nextID)
	mon := e.ctx.Monitor(ref)
	e.mons.Set(id, mon)
	e.monIDs.Set(mon, id)
	return id
}

func (e *actorEnv) demonitor(id monitorID) {
	if mon, ok := e.mons.Delete(id); ok {
		e.ctx.Demonitor(mon)
		e.monIDs.Delete(mon)
	}
}

// down translates an actor monitor's Down into the host's id, forgetting
// the monitor.
func (e *actorEnv) down(mon actor.MonitorRef) (monitorID, bool) {
	id, ok := e.monIDs.Delete(mon)
	if ok {
		e.mons.Delete(id)
	}
	return id, ok
}

func (e *actorEnv) monitorNode(node string)   { e.ctx.MonitorNode(node) }
func (e *actorEnv) demonitorNode(node string) { e.ctx.DemonitorNode(node) }
func (e *actorEnv) now() time.Time            { return time.Now() }
func (e *actorEnv) exit(reason actor.Reason)  { e.ctx.Exit(reason) }
