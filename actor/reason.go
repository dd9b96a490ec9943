package actor

import "fmt"

// ReasonKind classifies why a process exited.
type ReasonKind uint8

// Exit reason kinds. The numbers are wire format: do not renumber.
const (
	// ReasonNormal: the process stopped itself (Context.Stop) or was asked to.
	ReasonNormal ReasonKind = 0
	// ReasonShutdown: its node or supervisor shut it down.
	ReasonShutdown ReasonKind = 1
	// ReasonCrash: Receive panicked; Detail holds the panic value.
	ReasonCrash ReasonKind = 2
	// ReasonError: the process exited with an error (Context.Exit); Detail
	// holds its text.
	ReasonError ReasonKind = 3
	// ReasonNoProc: the monitored process did not exist.
	ReasonNoProc ReasonKind = 4
	// ReasonNoConnection: the monitored process's node was lost.
	ReasonNoConnection ReasonKind = 5
	// ReasonKilled: the process was told to exit by another (Node.Exit).
	ReasonKilled ReasonKind = 6

	maxReasonKind = ReasonKilled
)

var reasonNames = [...]string{
	ReasonNormal:       "normal",
	ReasonShutdown:     "shutdown",
	ReasonCrash:        "crash",
	ReasonError:        "error",
	ReasonNoProc:       "noproc",
	ReasonNoConnection: "noconnection",
	ReasonKilled:       "killed",
}

// String names the kind as Erlang would (normal, shutdown, noproc, ...).
func (k ReasonKind) String() string {
	if int(k) < len(reasonNames) {
		return reasonNames[k]
	}
	return fmt.Sprintf("reason(%d)", uint8(k))
}

// Reason says why a process exited.
type Reason struct {
	Kind   ReasonKind
	Detail string
}

// Common reasons.
var (
	Normal       = Reason{Kind: ReasonNormal}
	Shutdown     = Reason{Kind: ReasonShutdown}
	NoProc       = Reason{Kind: ReasonNoProc}
	NoConnection = Reason{Kind: ReasonNoConnection}
)

// ErrorReason returns a ReasonError reason carrying err's text.
func ErrorReason(err error) Reason {
	return Reason{Kind: ReasonError, Detail: err.Error()}
}

// Abnormal reports whether the exit was a failure: a crash, an error or a
// kill. Normal exits, shutdowns, and the monitor-only kinds are not.
func (r Reason) Abnormal() bool {
	switch r.Kind {
	case ReasonCrash, ReasonError, ReasonKilled:
		return true
	}
	return false
}

// String formats the reason as kind or kind: detail.
func (r Reason) String() string {
	if r.Detail == "" {
		return r.Kind.String()
	}
	return r.Kind.String() + ": " + r.Detail
}
