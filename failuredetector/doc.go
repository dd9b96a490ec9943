// Package failuredetector is rago's node failure detector, in the manner
// of RabbitMQ's aten: one detector process per node exchanges small
// heartbeats with the detectors of the nodes it must watch and tells local
// watcher processes when a node becomes Suspected and when it is Up again.
//
// It exists for the failures TCP does not report. A killed process's
// kernel resets its connections and the actor layer turns that into Down
// with reason noconnection within milliseconds; a frozen process
// (SIGSTOP, a stuck VM) or a partitioned one keeps its connections open and
// says nothing. Only the absence of expected messages reveals it, and in
// rago idle Raft clusters send no messages at all: the detector's
// heartbeats are the only background traffic of a node, one stream per
// node pair whatever the number of clusters.
//
// # Pieces
//
// Window is a pure value per watched node: a bounded ring of heartbeat
// inter-arrival times and a phi-accrual suspicion level computed for a
// caller-supplied time (see Window for the formula). Tests drive it with
// synthetic clocks.
//
// Detector is the handle on the process registered as ProcessName. Watch
// and Unwatch register local processes for a node (counted per watcher and
// node); the process heartbeats every node someone watches, answers every
// node that watches it, and sends a watcher only transitions: Suspected
// when a node's silence crosses the threshold, Up when a heartbeat comes
// again. Notices for one watcher all come from the detector process, so
// they arrive in the order they were decided.
//
// With Config.Disconnect (the default) a node that becomes suspected is
// also disconnected at the actor layer, as Erlang does after
// net_ticktime: queued messages to it are dropped and monitors on its
// processes fire with noconnection, so code that only monitors processes
// learns of frozen and partitioned nodes too.
//
// # Wire
//
// Heartbeats are an actor message with codec tag 150 (see heartbeat.go for
// the byte layout): the sender's node name, its detector's random
// incarnation (a change means the detector restarted), a sequence number
// and a flag saying whether the sender watches the receiver.
//
// docs/failure-detector.md explains the defaults, what is and is not
// detected, the message cost and the alternatives that were rejected.
package failuredetector
