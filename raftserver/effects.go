package raftserver

import (
	"time"

	"github.com/rago-raft/rago/actor"
)

// Effects collects what a machine asks its cluster's leader to do in the
// world: send messages, monitor processes and nodes, keep timers, call
// functions. A machine records effects while it applies a command (through
// ApplyContext), and in the optional callbacks (StateEnter, Tick).
//
// Every member records the same effects, because every member applies the
// same commands, but only the leader carries them out, after the command
// is applied. Followers drop them. What a leader observes (a monitored
// process went down, a node came up, a timer fired) comes back to every
// member as an observation in the log (see Observer), so the machine reacts
// to it deterministically.
//
// All monitors and timers are forgotten when leadership changes: a machine
// that needs them re-creates them in StateEnter(RoleLeader).
//
// Delivery guarantees, honestly: the leader carries out an effect once,
// after the entry is applied. If the leader crashes after applying and
// before its last applied index was saved (every 1024 entries and at stop),
// a restarted member that becomes leader applies the entry again and may
// repeat the effect (at least once). If it crashes after committing but
// before applying, the next leader applies and carries it out. If it
// crashes while carrying it out, the effect may be lost (at most once for
// that leader). Receivers that must not miss or double anything
// acknowledge through commands (an ARQ-style protocol).
type Effects struct {
	list []effect
}

type effectKind uint8

const (
	effSend effectKind = iota + 1
	effCall
	effMonitor
	effDemonitor
	effMonitorNode
	effDemonitorNode
	effTimer
	effReadLog
	effReleaseCursor
)

type effect struct {
	kind    effectKind
	to      actor.Ref
	msg     actor.Message
	fn      func()
	node    string
	name    string
	after   time.Duration
	indexes []uint64
	read    func(cmds [][]byte, out *Effects)
	index   uint64
}

// Send sends msg to the process to (on any node; msg needs an actor codec
// if it leaves the node). Like actor sends it is best effort.
func (e *Effects) Send(to actor.Ref, msg actor.Message) {
	e.list = append(e.list, effect{kind: effSend, to: to, msg: msg})
}

// Call runs fn on the leader's server goroutine. fn must be quick: the
// cluster waits behind it. A panic in fn is logged and ignored.
func (e *Effects) Call(fn func()) {
	e.list = append(e.list, effect{kind: effCall, fn: fn})
}

// Monitor asks the leader to monitor the process ref; when it goes down, a
// ProcessDown observation is committed to the log.
func (e *Effects) Monitor(ref actor.Ref) {
	e.list = append(e.list, effect{kind: effMonitor, to: ref})
}

// Demonitor stops a Monitor.
func (e *Effects) Demonitor(ref actor.Ref) {
	e.list = append(e.list, effect{kind: effDemonitor, to: ref})
}

// MonitorNode asks the leader to watch node; NodeDown and NodeUp
// observations are committed when its connection state changes (and once
// at the start, with the state as it is then).
func (e *Effects) MonitorNode(node string) {
	e.list = append(e.list, effect{kind: effMonitorNode, node: node})
}

// DemonitorNode stops a MonitorNode.
func (e *Effects) DemonitorNode(node string) {
	e.list = append(e.list, effect{kind: effDemonitorNode, node: node})
}

// SetTimer asks the leader to commit a TimerFired{Name: name} observation
// after d. Setting a timer of the same name again restarts it; d <= 0
// cancels it (Ra's infinity).
func (e *Effects) SetTimer(name string, d time.Duration) {
	e.list = append(e.list, effect{kind: effTimer, name: name, after: d})
}

// ReadLog asks the leader to read the commands at indexes from the log and
// call fn with them (in the order given; a command no longer in the log,
// or not a command, is nil), letting fn record more effects in out. It
// lets a machine keep large commands out of its state and load them only
// to act on them.
func (e *Effects) ReadLog(indexes []uint64, fn func(cmds [][]byte, out *Effects)) {
	e.list = append(e.list, effect{kind: effReadLog, indexes: append([]uint64(nil), indexes...), read: fn})
}

// ReleaseCursor tells the server that the machine's state at index
// contains everything it needs from the log up to there: a hint that the
// log up to index may be replaced by a snapshot.
func (e *Effects) ReleaseCursor(index uint64) {
	e.list = append(e.list, effect{kind: effReleaseCursor, index: index})
}

// Observation is something the leader observed on the machine's behalf,
// committed to the log so that every member's machine sees it at the same
// index. The set is closed: ProcessDown, NodeDown, NodeUp, TimerFired.
type Observation interface{ isObservation() }

// ProcessDown: a process the machine monitors went down. Reason is the
// actor exit reason as text (e.g. "noconnection", "crash: ...").
type ProcessDown struct {
	Ref    actor.Ref
	Reason string
}

// NodeDown: a node the machine monitors is not connected.
type NodeDown struct{ Node string }

// NodeUp: a node the machine monitors is connected.
type NodeUp struct{ Node string }

// TimerFired: a timer the machine set expired.
type TimerFired struct{ Name string }

func (ProcessDown) isObservation() {}
func (NodeDown) isObservation()    {}
func (NodeUp) isObservation()      {}
func (TimerFired) isObservation()  {}

// Observer is implemented by machines that use monitors or timers. Observe
// is called on every member, in log order, like Apply; it may record
// effects and must be deterministic.
type Observer interface {
	Observe(ctx *ApplyContext, o Observation)
}

// Role is a member's role, as StateEnter sees it.
type Role string

// Roles.
const (
	RoleLeader    Role = "leader"
	RoleFollower  Role = "follower"
	RoleCandidate Role = "candidate"
	RolePreVote   Role = "pre_vote"
)

// StateEnterer is implemented by machines that act on role changes, most
// often to re-create monitors and timers on becoming leader. StateEnter is
// not part of the log: it runs on one member, whatever its role; the
// effects it records are carried out only if the member leads.
type StateEnterer interface {
	StateEnter(role Role, out *Effects)
}

// Ticker is implemented by machines that want to be called periodically
// on their leader (SystemConfig.MachineTick). Tick is not part of the log;
// its effects are carried out by the leader. Only leaders of machines that
// implement Ticker run this timer: idle clusters of other machines cost
// nothing.
type Ticker interface {
	Tick(now time.Time, out *Effects)
}

// Overviewer is implemented by machines that report something about their
// state in ServerStatus.Machine (strings only, for dashboards).
type Overviewer interface {
	Overview() map[string]string
}
