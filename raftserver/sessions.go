package raftserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/rago-raft/rago/internal/wire"
)

// Sessions give retried commands exactly-once effect on the machine. A
// client tags each command with its session id and a sequence number; the
// server keeps, as replicated state next to the machine, the replies of
// each session's commands that the client has not yet confirmed seeing. A
// command whose (session, seq) was already applied is not applied again:
// the retry gets the first reply.
//
// The table is rebuilt by replaying the log, like the machine, so it
// survives restarts. Expiry is deterministic (by log index, never by
// time): a session unused for SessionTTLEntries applied entries is
// forgotten, and when more than MaxSessions exist the least recently used
// goes. A client must not retry a command after its session could have
// expired, or the retry may be applied twice.
type sessionTable struct {
	ttl     uint64
	max     int
	clients map[uint64]*session
}

type session struct {
	lastSeq   uint64
	responded uint64
	lastIndex uint64
	replies   map[uint64]sessionReply
}

type sessionReply struct {
	data []byte
	err  string // ErrMachine text, if the command failed
}

// maxRepliesPerSession bounds what one session keeps: a client that never
// confirms replies cannot grow the table without limit.
const maxRepliesPerSession = 8192

// sessionExpiryEvery is how often (in log indexes) expired sessions are
// swept; the same indexes on every member, so the table stays identical.
const sessionExpiryEvery = 1024

func newSessionTable(ttl uint64, max int) *sessionTable {
	return &sessionTable{ttl: ttl, max: max, clients: map[uint64]*session{}}
}

// ErrSessionStale: a session command's sequence number was already
// confirmed by the client (or its reply dropped), so neither its reply nor
// a new application is possible.
var ErrSessionStale = errors.New("raftserver: session command is stale")

// lookup finds the outcome of (client, seq) if it was applied. known says
// whether the command must not be applied: then reply/err are its answer.
// len returns the number of clients with a session.
func (t *sessionTable) len() int { return len(t.clients) }

func (t *sessionTable) lookup(client, seq uint64) (reply []byte, err error, known bool) {
	s := t.clients[client]
	if s == nil {
		return nil, nil, false
	}
	if r, ok := s.replies[seq]; ok {
		if r.err != "" {
			// Only failed machine callbacks are recorded as errors.
			return nil, &wireError{sentinel: ErrMachine, text: r.err}, true
		}
		return r.data, nil, true
	}
	if seq <= s.responded {
		// Its reply is gone: the client confirmed it (or it was dropped
		// for space, which raises responded too).
		return nil, fmt.Errorf("%w: session %x seq %d (last %d, confirmed %d)", ErrSessionStale, client, seq, s.lastSeq, s.responded), true
	}
	// Not applied yet: a command's reply stays until confirmed, and the
	// commands of one session may arrive out of order.
	return nil, nil, false
}

// appendBinary encodes the table for a snapshot, in a fixed order so that
// every member writes the same bytes (wire format):
//
//	uvarint n | n x { u64 client | uvarint lastSeq | uvarint responded |
//	  uvarint lastIndex | uvarint m | m x { uvarint seq | bytes data | string err } }
//
// sessions by client id, replies by seq.
func (t *sessionTable) appendBinary(b []byte) []byte {
	ids := slices.Sorted(maps.Keys(t.clients))
	b = wire.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		s := t.clients[id]
		b = wire.AppendUint64(b, id)
		b = wire.AppendUvarint(b, s.lastSeq)
		b = wire.AppendUvarint(b, s.responded)
		b = wire.AppendUvarint(b, s.lastIndex)
		seqs := slices.Sorted(maps.Keys(s.replies))
		b = wire.AppendUvarint(b, uint64(len(seqs)))
		for _, seq := range seqs {
			r := s.replies[seq]
			b = wire.AppendUvarint(b, seq)
			b = wire.AppendBytes(b, r.data)
			b = wire.AppendString(b, r.err)
		}
	}
	return b
}

// readSessions decodes what appendBinary wrote into a table with the given
// expiry settings.
func readSessions(r *wire.Reader, ttl uint64, max int) *sessionTable {
	t := newSessionTable(ttl, max)
	n := r.Len(13)
	for range n {
		id := r.Uint64()
		s := &session{lastSeq: r.Uvarint(), responded: r.Uvarint(), lastIndex: r.Uvarint()}
		m := r.Len(3)
		s.replies = make(map[uint64]sessionReply, m)
		for range m {
			seq := r.Uvarint()
			s.replies[seq] = sessionReply{data: r.BytesCopy(), err: r.String()}
		}
		t.clients[id] = s
	}
	return t
}

// record stores the outcome of (client, seq) applied at index and forgets
// replies the client confirmed (responded).
func (t *sessionTable) record(index, client, seq, responded uint64, reply []byte, err error) {
	s := t.clients[client]
	if s == nil {
		if len(t.clients) >= t.max {
			t.evictOldest()
		}
		s = &session{replies: map[uint64]sessionReply{}}
		t.clients[client] = s
	}
	r := sessionReply{data: reply}
	if err != nil {
		r.err = err.Error()
	}
	s.replies[seq] = r
	s.lastSeq = max(s.lastSeq, seq)
	s.lastIndex = index
	if responded > s.responded {
		s.responded = responded
		for k := range s.replies {
			if k <= responded {
				delete(s.replies, k)
			}
		}
	}
	if len(s.replies) > maxRepliesPerSession {
		oldest := s.lastSeq
		for k := range s.replies {
			oldest = min(oldest, k)
		}
		delete(s.replies, oldest)
		s.responded = max(s.responded, oldest)
	}
}

// expire drops sessions unused for ttl entries; call it at the same
// indexes on every member.
func (t *sessionTable) expire(index uint64) {
	if index < t.ttl {
		return
	}
	for id, s := range t.clients {
		if s.lastIndex+t.ttl < index {
			delete(t.clients, id)
		}
	}
}

func (t *sessionTable) evictOldest() {
	var oldestID uint64
	oldest := ^uint64(0)
	for id, s := range t.clients {
		// Ties broken by id so every member evicts the same session.
		if s.lastIndex < oldest || s.lastIndex == oldest && id < oldestID {
			oldest, oldestID = s.lastIndex, id
		}
	}
	delete(t.clients, oldestID)
}

// Session is a client's handle for exactly-once commands: every command it
// sends gets the next sequence number, and ProcessCommand retries after a
// timeout or a leader change with the same number, so a command is applied
// at most once even when the first attempt's outcome was unknown. A
// Session is safe for concurrent use; its commands are independent (not
// ordered among themselves unless the caller waits).
type Session struct {
	sys *System
	id  uint64

	mu       sync.Mutex
	next     uint64
	inflight map[uint64]struct{}
}

// NewSession starts a client session with a random 64-bit id. Sessions
// cost nothing until their first command.
func (s *System) NewSession() *Session {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Session{sys: s, id: binary.LittleEndian.Uint64(b[:]), inflight: map[uint64]struct{}{}}
}

// ID returns the session's id.
func (c *Session) ID() uint64 { return c.id }

func (c *Session) begin() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next++
	c.inflight[c.next] = struct{}{}
	return c.next
}

func (c *Session) end(seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.inflight, seq)
}

// responded is the highest sequence number below every command still in
// flight: the server may forget replies up to it.
func (c *Session) responded() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	low := c.next + 1
	for seq := range c.inflight {
		low = min(low, seq)
	}
	return low - 1
}

// ProcessCommand applies cmd exactly once through via's cluster, retrying
// with the same sequence number after timeouts, lost leadership and
// elections until ctx ends. Errors are those of System.ProcessCommand;
// ErrTimeout and ErrLeadershipLost only come back when ctx ended with the
// outcome still unknown (a later retry could not be made).
func (c *Session) ProcessCommand(ctx context.Context, via ServerID, cmd []byte) ([]byte, ServerID, error) {
	return c.ProcessCommandAny(ctx, []ServerID{via}, cmd)
}

// ProcessCommandAny is ProcessCommand through any of vias, members of one
// cluster: the first attempt goes through vias[0], and each retry through
// the next one in turn, all with the same sequence number, so that a
// member that is down, or no longer on its node (ErrNoSuchServer), does
// not hold the command up and a retry through another member cannot apply
// it twice. With one via it is ProcessCommand.
func (c *Session) ProcessCommandAny(ctx context.Context, vias []ServerID, cmd []byte) ([]byte, ServerID, error) {
	if len(vias) == 0 {
		return nil, ServerID{}, fmt.Errorf("%w: no member to send the command through", ErrInvalidConfig)
	}
	cmd = bytes.Clone(cmd) // see System.ProcessCommand
	seq := c.begin()
	defer c.end(seq)
	// With other members to try, one that knows no leader (a replica
	// waiting to be added, one cut off) is left at once for the next,
	// rather than asked again until the attempt's time is up.
	wait := sleepCtx
	if len(vias) > 1 {
		wait = func(context.Context, time.Duration) error { return errNextVia }
	}
	backoff := retryBackoffMin
	for i := 0; ; i++ {
		via := vias[i%len(vias)]
		attempt, cancel := context.WithTimeout(ctx, sessionAttemptTimeout(ctx))
		req := &commandReq{Data: cmd, Session: true, Client: c.id, Seq: seq, Responded: c.responded()}
		reply, leader, err := c.sys.processCommandWait(attempt, via, req, wait)
		cancel()
		if err == nil {
			return reply, leader, nil
		}
		retry := errors.Is(err, ErrTimeout) || errors.Is(err, ErrLeadershipLost) || errors.Is(err, ErrNoLeader) ||
			errors.Is(err, ErrNotLeader) || errors.Is(err, ErrUnreachable) ||
			len(vias) > 1 && errors.Is(err, ErrNoSuchServer)
		if !retry || ctx.Err() != nil {
			return nil, leader, err
		}
		if (i+1)%len(vias) != 0 {
			continue // try the next member at once; pause after a full turn
		}
		// Each turn starts at vias[0] again: a leader named by a failed
		// attempt may be gone by now, and the vias find the current one.
		if sleepCtx(ctx, backoff) != nil {
			return nil, leader, err
		}
		backoff = min(2*backoff, retryBackoffMax)
	}
}

// errNextVia ends a request's rounds through one member so that the next
// member is tried; it is never returned.
var errNextVia = errors.New("raftserver: try the next member")

// sessionAttemptTimeout gives one attempt a part of the caller's time, so
// that a lost attempt leaves time to retry.
func sessionAttemptTimeout(ctx context.Context) time.Duration {
	d := 2 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl) / 3; left < d {
			d = max(left, 10*time.Millisecond)
		}
	}
	return d
}
