// Package actor gives rago Erlang's process vocabulary on top of
// protoactor-go: named processes with mailboxes, asynchronous sends that
// never block the sender, calls with timeouts, process and node monitors,
// timers and supervisors, on nodes that talk to each other over the network.
//
// It is the only package of rago that imports protoactor-go. Everything
// above it (the WAL, the segment writer, Raft servers) speaks only this
// vocabulary.
//
// # Nodes and processes
//
// A Node is one actor system listening on host:port; its name is that
// address. A process is a Process value (its Receive method) plus a
// mailbox; Receive runs for one message at a time, so a process owns its
// state without locks. A process is addressed by a Ref {Name, Node}: the
// name it was registered under and the node it lives on. A Ref is plain
// data; it outlives restarts of the process it names, like Ra's server ids.
//
// Receive first gets Started, and last Terminating with the exit reason.
// A panic in Receive ends the process with a crash reason (it is logged
// with its stack); its monitors get Down and a supervisor may restart it.
//
// # Messages
//
// Messages between processes of one node are Go values passed by
// reference and never copied: a sender must not modify a message after
// sending it. Messages that cross nodes must have a Codec registered with
// Register (usually in an init function); sending an unregistered type to
// another node fails with ErrNotSerializable.
//
// Send is asynchronous and never blocks, whether the target node is up,
// down or unreachable. Delivery is best effort, as in Erlang: messages from
// one process to another arrive in the order they were sent, or not at
// all. Messages for another node wait in a bounded queue per node
// (Config.LinkQueueBytes) and are dropped when it is full or the node is
// lost; Stats counts the drops, and PeerStats the messages sent, received
// and dropped per peer. MailboxDepth tells how many messages wait for a
// local process, without messaging it.
//
// # Calls
//
// A call (Node.Call, Node.CallContext) ends as soon as its outcome is
// known: in the reply, or in an error that says whether the request was
// processed. A request that the process never took, because it exited
// first, fails with ErrNoProcess (not processed); a request it took and
// did not answer before it exited (however it exited, and even if it
// handed the ReplyTo on) fails with ErrProcessExited (outcome unknown); a
// call whose connection to the callee's node broke, on either side, while
// it waited fails with ErrNodeLost (outcome unknown). Only a callee that
// is slow, alive and never answering, or behind a partition leaves its
// caller waiting until the deadline. Each call is answered once: a reply
// after the call was answered is dropped.
//
// # The wire
//
// The processes, mailboxes and dispatching are protoactor-go's. Traffic
// between nodes is not: each node sends to a peer over one TCP connection
// of its own, in rago's own frames (see frame.go for the byte layout): a
// version byte, the sending node, the connection's epoch and a batch of
// items, each a send, call, reply or control item carrying a message as
// its type tag, codec version and payload. Decoding rejects malformed
// frames and unknown tags with an error and never panics; a bad item is
// dropped, never the node.
//
// protoactor-go's own remote layer was the first choice and was dropped:
// it races with itself when several nodes share a process (it sets gRPC's
// global logger on every start and clears its endpoint table unsynchronised
// on shutdown), waits two seconds after a failed connection attempt,
// carries only registered protobuf types (a peer crashes on an unknown
// one), and queues without bound for a peer that stopped reading.
//
// One pump goroutine per peer writes that peer's frames through a buffer,
// so frames batch up while a write is in progress. A peer that stops
// reading (frozen, partitioned) fills its socket buffer and blocks the
// pump; then the queue fills to Config.LinkQueueBytes and new messages are
// dropped. Memory per peer is bounded by the queue plus socket buffers.
//
// # Monitors
//
// Monitor(ref) delivers exactly one Down to the monitoring process when the
// target exits, crashes, did not exist (ReasonNoProc), or its node is lost
// (ReasonNoConnection). MonitorNode delivers the node's current state at
// once (NodeUp or NodeDown, as soon as it is known) and then every change;
// while a monitored node is down, the node retries the connection every
// Config.ReconnectInterval so NodeUp follows when it returns.
//
// A node learns that a peer is lost from its connection to the peer: a
// killed process's kernel closes it at once. A frozen or partitioned peer
// keeps its connection open; the failure detector package notices those
// and calls Node.Disconnect. As in Erlang, the connection state with a
// peer is one for both directions: a node that loses a peer closes the
// connections the peer opened to it too, so the peer loses it at once in
// turn (its monitors fire, its calls end) rather than waiting for replies
// that are now dropped.
//
// # Who may do what
//
// Context.SourceNode names the node the current message came from; on a
// node with credentials (Config.TLS, Config.ClusterSecret) a peer cannot
// forge it, so a process can check a sender named inside a message
// against it. Other nodes may send to, call and monitor any process. Only
// a process spawned with AcceptRemoteExits obeys an exit signal from
// another node (Node.Exit there); every other process drops it and
// Stats.RefusedExits counts it, so a peer can never stop a process it was
// not meant to. A Down from a peer is taken only for a monitor on one of
// that peer's own processes.
//
// # Supervision
//
// StartSupervisor runs children under an OTP-style supervisor (one for
// one, one for all, rest for one; permanent, transient and temporary
// children) with a restart budget of Intensity restarts per Period. A
// crash loop that exhausts the budget stops every child and the
// supervisor itself, with a reason its monitors see.
package actor
