package actor

import "errors"

// Errors returned by this package. Check them with errors.Is; most are
// wrapped with the name of the process or node involved.
var (
	// ErrNameTaken: a process is already registered under the name.
	ErrNameTaken = errors.New("actor: name already registered")
	// ErrInvalidName: a process name is empty, too long, or uses the
	// reserved '$' prefix.
	ErrInvalidName = errors.New("actor: invalid process name")
	// ErrNoProcess: no process is registered under the name on its node,
	// or it exited before it took the request. A call that fails with it
	// was not processed: it is safe to retry.
	ErrNoProcess = errors.New("actor: no such process")
	// ErrTimeout: a call got no reply in time. The target may or may not
	// have processed the request (its node may be down or slow).
	ErrTimeout = errors.New("actor: call timed out")
	// ErrNodeDown: a call's request was not sent because its node is known
	// to be unreachable (its connection broke less than
	// Config.ReconnectInterval ago, its queue is full, or the connection
	// attempt the request waited for failed). The request was not
	// processed; retry later or elsewhere.
	ErrNodeDown = errors.New("actor: node not connected")
	// ErrNodeLost: the connection to the call's node broke (or the node
	// was found to have restarted, or Node.Disconnect gave it up) while the
	// call waited for its reply. The request may or may not have been
	// processed.
	ErrNodeLost = errors.New("actor: connection to node lost during call")
	// ErrProcessExited: the process took the call's request and exited
	// (it stopped, was killed, or crashed while handling it or later)
	// before anyone answered it. The request may or may not have been
	// processed.
	ErrProcessExited = errors.New("actor: process exited before replying")
	// ErrNotSerializable: a message for another node has no registered
	// codec, or its codec failed to encode it.
	ErrNotSerializable = errors.New("actor: message type has no codec")
	// ErrMessageTooLarge: an encoded message exceeds Config.MaxMessageBytes.
	ErrMessageTooLarge = errors.New("actor: message too large")
	// ErrBadMessage: a message or frame from another node does not decode.
	ErrBadMessage = errors.New("actor: malformed message")
	// ErrUnsupportedVersion: a connection, frame or message from another
	// node is of a version this node does not speak. The error is a
	// *VersionError naming both; it also matches ErrBadMessage.
	ErrUnsupportedVersion = errors.New("actor: unsupported version")
	// ErrNodeStopped: the node is stopping or stopped.
	ErrNodeStopped = errors.New("actor: node stopped")
	// ErrStart: the node could not start (e.g. its address is in use).
	ErrStart = errors.New("actor: node failed to start")
	// ErrInvalidConfig: a configuration value is out of range.
	ErrInvalidConfig = errors.New("actor: invalid configuration")
	// ErrCodecConflict: a codec's tag or type is already registered.
	ErrCodecConflict = errors.New("actor: codec tag or type already registered")
	// ErrNotLocal: the operation needs a process on this node.
	ErrNotLocal = errors.New("actor: process is not on this node")
	// ErrNoChild: a supervisor has no child of that name.
	ErrNoChild = errors.New("actor: no such child")
	// ErrAuthentication: a connection between nodes was refused because
	// one side could not authenticate the other (Config.TLS,
	// Config.ClusterSecret), or they speak different versions or security
	// modes of the handshake (then ErrProtocolMismatch too).
	ErrAuthentication = errors.New("actor: peer failed authentication")
	// ErrProtocolMismatch: a peer opened a connection with another
	// connection version or security mode than this node's.
	ErrProtocolMismatch = errors.New("actor: peer speaks another protocol version or security mode")
)
