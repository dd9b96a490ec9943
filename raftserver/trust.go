package raftserver

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rago-raft/rago/actor"
)

// Who may send a server what (docs/raftserver.md, "Who may send what").
//
// A Raft message, snapshot chunk or snapshot ack names its sender, a
// server. The server takes it only if that sender lives on the node the
// message came from (actor.Context.SourceNode, which a node with
// credentials cannot forge) and is a server it knows: a member of a
// configuration it held since it started, or of one its log or snapshot
// holds (core.Raft.KnownMembers). A removed member therefore stays known
// until the server restarts, and a leader removing itself is heard until
// its last messages. A server that is not a member of its own
// configuration (one that joins and has not heard of its cluster yet, or
// one removed), or whose log is empty (a replica of a new cluster, or one
// created again after losing its disk, which knows only the initial
// members), takes messages from any server, since it cannot know who
// leads the cluster it joins; the node check still holds.
//
// Raft itself lets a server take requests from servers outside its
// configuration, so that a member that missed configurations can catch
// up from a leader added since. Members are checked here anyway, so
// that a node that hosts none of a cluster's members cannot send it Raft
// messages. A member whose configuration is behind would then never hear
// from such a leader: so a member that refuses a server it does not know
// asks the servers it knows for their configurations (membersAsk, at
// most once per membersAskEvery), and from then on knows their members
// too. Those it knows vouch for the others; a stranger learns nothing it
// can use. When none of them answers (all were replaced while it was
// down), the member stays behind until it is removed and added again
// (docs/raftserver.md).

// membersAskEvery bounds how often a server asks the servers it knows for
// their configurations, however many messages from strangers it refuses.
const membersAskEvery = time.Second

// Messages between servers about who is a member (see vouch).
type (
	// membersAsk asks a server for the members of its configuration.
	membersAsk struct{ From ServerID }
	// membersTell answers a membersAsk: the configuration in effect at
	// From.
	membersTell struct {
		From              ServerID
		Voters, NonVoters []ServerID
	}
)

// Why a message from another server was refused.
const (
	refusedForeignNode = "its sender is not on the node it came from"
	refusedNotMember   = "its sender is not a member of the cluster as this server knows it"
)

// peerInput takes a message from another server, which arrived from node
// src: it hands it to handle if the sender may send it, and otherwise
// drops and counts it.
func (s *server) peerInput(src string, msg actor.Message) {
	var from ServerID
	switch m := msg.(type) {
	case *peerMsg:
		from = m.From
	case *snapChunk:
		from = m.From
	case *snapAck:
		from = m.From
	case *membersAsk:
		from = m.From
	case *membersTell:
		from = m.From
	default:
		return
	}
	if why := s.refusePeer(src, from); why != "" {
		s.refusedPeer++
		s.node.refusedPeerMessage(s.self, from, src, msg, why)
		if why == refusedNotMember {
			s.vouch()
		}
		return
	}
	s.handle(msg)
}

// refusePeer says why a message from from that came from node src is not
// taken, "" if it is.
func (s *server) refusePeer(src string, from ServerID) string {
	if from.Node != src {
		return refusedForeignNode
	}
	if s.known.Has(from) {
		return ""
	}
	if !s.current.Contains(s.self) || s.raft.LastIndex() == 0 {
		return "" // joining, removed or empty: it cannot know who leads
	}
	return refusedNotMember
}

// vouch asks every server this one knows for the members of its
// configuration, unless it did within membersAskEvery: a stranger may be
// a member added while this server was away, whose configuration is then
// behind. The answers (membersTell) make their members known.
func (s *server) vouch() {
	now := s.env.now()
	if !s.askedAt.IsZero() && now.Sub(s.askedAt) < membersAskEvery {
		return
	}
	s.askedAt = now
	ids := make([]ServerID, 0, s.known.Len())
	for id := range s.known.All() {
		if id != s.self {
			ids = append(ids, id)
		}
	}
	// In order, so that a simulation replays the sends.
	slices.SortFunc(ids, ServerID.Compare)
	for _, id := range ids {
		_ = s.env.send(Ref(id), &membersAsk{From: s.self})
	}
}

// membersTold adds the members a server it knows told it of.
func (s *server) membersTold(m *membersTell) {
	added := 0
	for _, list := range [][]ServerID{m.Voters, m.NonVoters} {
		for _, id := range list {
			if !s.known.Has(id) {
				s.known.Set(id, struct{}{})
				added++
			}
		}
	}
	if added > 0 {
		s.logger.Info("learned members from another member", "from", m.From.String(), "voters", fmt.Sprint(m.Voters), "non_voters", fmt.Sprint(m.NonVoters))
	}
}

// learnMembers adds the members of every configuration the core holds to
// the servers this one takes messages from. It runs whenever the
// configuration in effect changes, so it sees every configuration the
// server ever held.
func (s *server) learnMembers() {
	s.raft.KnownMembers(func(id ServerID) { s.known.Set(id, struct{}{}) })
}

// SystemStats counts what a node's Raft system refused since it started.
type SystemStats struct {
	// RefusedPeerMessages: Raft messages, snapshot chunks and snapshot
	// acks that this node's servers dropped because their sender was not
	// on the node they came from or was not a member of the cluster as
	// the receiving server knew it (see ServerStatus.RefusedPeerMessages
	// for one server's count).
	RefusedPeerMessages uint64
	// RefusedSystemRequests: requests to start, stop or delete a server
	// that came from another node and were refused with ErrNotPermitted.
	RefusedSystemRequests uint64
}

// systemStats are a System's counters.
type systemStats struct {
	refusedPeerMessages, refusedSystemRequests atomic.Uint64
}

// Stats returns the system's counters.
func (s *System) Stats() SystemStats {
	return SystemStats{
		RefusedPeerMessages:   s.stats.refusedPeerMessages.Load(),
		RefusedSystemRequests: s.stats.refusedSystemRequests.Load(),
	}
}

func (s *System) refusedPeerMessage(server, from ServerID, src string, msg actor.Message, why string) {
	s.stats.refusedPeerMessages.Add(1)
	s.refusals.log(s, "dropped a message from another server", "server", server.String(), "from", from.String(),
		"source_node", src, "message", messageName(msg), "why", why)
}

// messageName names a peer message for a log line: the Raft message
// inside, or the snapshot transfer's.
func messageName(msg actor.Message) string {
	if m, ok := msg.(*peerMsg); ok {
		return fmt.Sprintf("%T", m.Msg)
	}
	return fmt.Sprintf("%T", msg)
}

// refusalLog rate-limits the logs of refusals, so that a misbehaving or
// hostile peer cannot flood the log: one line a second, with the number
// of refusals it did not log.
type refusalLog struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (l *refusalLog) log(s *System, msg string, args ...any) {
	l.mu.Lock()
	now := time.Now()
	if now.Sub(l.last) < time.Second {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	suppressed := l.suppressed
	l.last, l.suppressed = now, 0
	l.mu.Unlock()
	s.logger.Warn(msg, append(args, "suppressed", suppressed)...)
}
