package raftserver

import (
	"errors"
	"fmt"

	"github.com/rago-raft/rago/raftserver/core"
)

// Errors a caller of this package sees. Test them with errors.Is; most
// come wrapped with the server or cluster involved.
var (
	// ErrNotLeader: the server asked is not the leader. The error is a
	// *NotLeaderError naming the leader when one is known. Nothing was
	// appended.
	ErrNotLeader = errors.New("raftserver: not the leader")
	// ErrNoLeader: no leader is known (an election is in progress, or too
	// few members are up to elect one). Nothing was appended; retry later.
	ErrNoLeader = errors.New("raftserver: no leader")
	// ErrTimeout: no answer came: none in time, or the connection to the
	// server's node broke, or the server exited, while the call waited
	// (then at once). The outcome
	// of a command is unknown: it may have been applied or may still be.
	ErrTimeout = errors.New("raftserver: timed out")
	// ErrLeadershipLost: the command was appended, and then its leader lost
	// leadership before it committed. The outcome is unknown.
	ErrLeadershipLost = errors.New("raftserver: leadership lost, outcome unknown")
	// ErrUnreachable: the server's node is not connected (its connection
	// broke moments ago). The request was not sent; the synchronous calls
	// retry until their context ends.
	ErrUnreachable = errors.New("raftserver: node unreachable")
	// ErrNoSuchServer: no server with that id runs (or is recorded) there.
	ErrNoSuchServer = errors.New("raftserver: no such server")
	// ErrNoSuchCluster: no member of that cluster is known.
	ErrNoSuchCluster = errors.New("raftserver: no such cluster")
	// ErrClusterExists: a server of that id already exists, or already
	// belongs to another cluster.
	ErrClusterExists = errors.New("raftserver: cluster or server already exists")
	// ErrNotEnoughMembers: too few members could be started to form a
	// quorum.
	ErrNotEnoughMembers = errors.New("raftserver: not enough members for a quorum")
	// ErrShuttingDown: the system (or the server) is stopping.
	ErrShuttingDown = errors.New("raftserver: shutting down")
	// ErrMembershipChange: a membership change was refused: the member is
	// unknown or already present (possibly as another incarnation of its
	// replica: see Rejoin), or too many changes already wait at the leader
	// for earlier ones to commit. The wrapped core error says which.
	// Nothing was appended.
	ErrMembershipChange = errors.New("raftserver: membership change refused")
	// ErrTransfer: a leadership transfer was refused or did not complete.
	ErrTransfer = errors.New("raftserver: leadership transfer failed")
	// ErrUnknownMachine: the node has no machine registered under the kind.
	ErrUnknownMachine = errors.New("raftserver: unknown machine kind")
	// ErrMachine: the machine failed a command or query (it returned an
	// error or panicked). The state machine is unchanged by a panicking
	// command on every member; the error text says what happened.
	ErrMachine = errors.New("raftserver: machine error")
	// ErrNotLocal: the operation needs the server to be on this node (a
	// query function cannot travel to another node).
	ErrNotLocal = errors.New("raftserver: server is not on this node")
	// ErrInvalidConfig: a configuration or argument is out of range.
	ErrInvalidConfig = errors.New("raftserver: invalid configuration")
	// ErrCompacted: a log watch asked for entries the server no longer
	// holds (a snapshot replaced them). The error is a *CompactedError.
	ErrCompacted = errors.New("raftserver: log compacted")
	// ErrInvalidBackup: a backup is damaged, truncated, not a backup, of
	// another machine kind, or written by a newer machine version; the
	// message says which. Nothing was created from it.
	ErrInvalidBackup = errors.New("raftserver: invalid backup")
	// ErrStorage: the server's storage failed (disk full, I/O error). The
	// server stops; its supervisor restarts it from durable state.
	ErrStorage = errors.New("raftserver: storage failed")
	// ErrNotPermitted: a node refused a request from another node that it
	// does not take from there: a server delete while its
	// SystemConfig.AllowRemoteDelete is off, or any request to start,
	// stop or delete a server from a node that did not authenticate, on a
	// node with credentials. Nothing was done; the text names the node
	// and the reason.
	ErrNotPermitted = errors.New("raftserver: not permitted")
	// ErrRestartLimit: a server, or the node's log processes, failed more
	// often than their restart budget allows and are not restarted (see
	// System.LocalServer and System.Err). Across nodes only the ErrStorage
	// it comes with travels.
	ErrRestartLimit = errors.New("raftserver: restart limit reached")
)

// NotLeaderError is returned when a request reached a member that is not
// the leader; Leader is the leader it knows, or zero.
type NotLeaderError struct {
	Server ServerID
	Leader ServerID
}

func (e *NotLeaderError) Error() string {
	if e.Leader.IsZero() {
		return fmt.Sprintf("raftserver: %s is not the leader and knows none", e.Server)
	}
	return fmt.Sprintf("raftserver: %s is not the leader; the leader is %s", e.Server, e.Leader)
}

// Is makes errors.Is(err, ErrNotLeader) hold.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// errCode is an error as it travels between nodes. The numbers are wire
// format: do not renumber.
type errCode uint8

const (
	codeOK errCode = iota
	codeNotLeader
	codeNoLeader
	codeLeadershipLost
	codeNoSuchServer
	codeNoSuchCluster
	codeClusterExists
	codeShuttingDown
	codeMembershipChange
	codeTransfer
	codeUnknownMachine
	codeMachine
	codeInvalid
	codeStorage
	codeNotEnoughMembers
	codeSessionStale
	codeUnreachable
	codeCompacted
	codeNotPermitted
	codeOther errCode = 255
)

var codeErrors = map[errCode]error{
	codeNoLeader:         ErrNoLeader,
	codeLeadershipLost:   ErrLeadershipLost,
	codeNoSuchServer:     ErrNoSuchServer,
	codeNoSuchCluster:    ErrNoSuchCluster,
	codeClusterExists:    ErrClusterExists,
	codeShuttingDown:     ErrShuttingDown,
	codeMembershipChange: ErrMembershipChange,
	codeTransfer:         ErrTransfer,
	codeUnknownMachine:   ErrUnknownMachine,
	codeMachine:          ErrMachine,
	codeInvalid:          ErrInvalidConfig,
	codeStorage:          ErrStorage,
	codeNotEnoughMembers: ErrNotEnoughMembers,
	codeSessionStale:     ErrSessionStale,
	codeUnreachable:      ErrUnreachable,
	codeCompacted:        ErrCompacted,
	codeNotPermitted:     ErrNotPermitted,
}

// remoteError is an error carried across nodes: its code (for errors.Is),
// its text, and for not-leader errors the leader.
type remoteError struct {
	Code   errCode
	Detail string
	Leader ServerID
}

// toRemote turns an error into its wire form (zero for nil).
func toRemote(err error) remoteError {
	if err == nil {
		return remoteError{}
	}
	var nl *NotLeaderError
	if errors.As(err, &nl) {
		return remoteError{Code: codeNotLeader, Detail: err.Error(), Leader: nl.Leader}
	}
	for code, sentinel := range codeErrors {
		if errors.Is(err, sentinel) {
			return remoteError{Code: code, Detail: err.Error()}
		}
	}
	return remoteError{Code: codeOther, Detail: err.Error()}
}

// err turns the wire form back into an error that matches the sentinel.
func (r remoteError) err(server ServerID) error {
	switch r.Code {
	case codeOK:
		return nil
	case codeNotLeader:
		return &NotLeaderError{Server: server, Leader: r.Leader}
	}
	if s, ok := codeErrors[r.Code]; ok {
		if r.Detail == "" || r.Detail == s.Error() {
			return s
		}
		return &wireError{sentinel: s, text: r.Detail}
	}
	return errors.New(r.Detail)
}

// wireError keeps the text an error had on the node that raised it and
// still matches its sentinel.
type wireError struct {
	sentinel error
	text     string
}

func (e *wireError) Error() string { return e.text }
func (e *wireError) Unwrap() error { return e.sentinel }

// fromCore maps the errors the Raft core puts in Reply actions onto ours.
func fromCore(err error, self, leader ServerID) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, core.ErrNotLeader):
		return &NotLeaderError{Server: self, Leader: leader}
	case errors.Is(err, core.ErrNoLeader):
		return fmt.Errorf("%w: %s: %w", ErrNoLeader, self, err)
	case errors.Is(err, core.ErrLeadershipLost):
		return fmt.Errorf("%w: %s", ErrLeadershipLost, self)
	case errors.Is(err, core.ErrTransferInProgress):
		// Commands refused during a transfer: the leader is about to change.
		return fmt.Errorf("%w: %s: %w", ErrNoLeader, self, err)
	case errors.Is(err, core.ErrMembershipChangePending),
		errors.Is(err, core.ErrUnknownMember),
		errors.Is(err, core.ErrMemberExists),
		errors.Is(err, core.ErrOtherIncarnation):
		return fmt.Errorf("%w: %w", ErrMembershipChange, err)
	case errors.Is(err, core.ErrTransferFailed):
		return fmt.Errorf("%w: %w", ErrTransfer, err)
	}
	return err
}
