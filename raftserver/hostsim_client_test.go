package raftserver

import (
	"errors"
	"fmt"

	"github.com/anishathalye/porcupine"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/internal/kvmodel"
	"github.com/rago-raft/rago/raftserver/core"
)

// Events of the simulation's clients.
type (
	hsClientNext struct{ c int }
	hsSendOp     struct {
		op  *hsOp
		try int
	}
	hsReply struct {
		op  *hsOp
		try int
		msg actor.Message
	}
	hsTimeout struct {
		op  *hsOp
		try int
	}
)

// anyMember picks a member that was not removed for good.
func (w *hsWorld) anyMember() int {
	for {
		if i := w.rng.IntN(len(w.members)); !w.members[i].stopped {
			return i
		}
	}
}

// Clients.

// hsClient issues one operation at a time to the member it believes leads;
// session clients tag puts with their session and retry an unknown outcome
// with the same sequence number.
type hsClient struct {
	idx      int
	leader   int
	cur      *hsOp
	seq      int
	session  bool
	clientID uint64
	sessSeq  uint64
	done     uint64 // highest session seq answered
}

type hsOp struct {
	id        int
	client    int
	put       bool
	poison    bool
	key       string
	value     string
	call      int64
	via       int // the member first asked
	target    int // the member asked now
	redirects int
	try       int
	sessSeq   uint64
	// uncertain: an earlier attempt's outcome is unknown, so a later
	// refusal does not mean the command had no effect.
	uncertain bool
}

var hsKeys = []string{"a", "b", "c"}

func (w *hsWorld) clientNext(c *hsClient) {
	if w.healed || c.cur != nil {
		return
	}
	c.seq++
	w.nextOp++
	o := &hsOp{id: w.nextOp, client: c.idx, key: hsKeys[w.rng.IntN(len(hsKeys))], call: w.now}
	switch x := w.rng.IntN(20); {
	case x == 0:
		o.poison, o.put = true, true
	case x < 12:
		o.put = true
		o.value = fmt.Sprintf("c%d-%d", c.idx, c.seq)
	}
	if c.session && o.put {
		c.sessSeq++
		o.sessSeq = c.sessSeq
		w.stats.SessionOps++
	}
	o.via = c.leader
	if o.via < 0 || w.members[o.via].stopped || w.rng.IntN(8) == 0 {
		o.via = w.anyMember()
	}
	o.target = o.via
	c.cur = o
	w.schedule(1+w.rng.Int64N(5), hsSendOp{op: o, try: o.try})
}

// sendOp sends the op's request to its target member.
func (w *hsWorld) sendOp(o *hsOp, try int) {
	c := w.clients[o.client]
	if c.cur != o || o.try != try {
		return
	}
	w.schedule(hsClientWaitMs, hsTimeout{op: o, try: try})
	m := w.members[o.target]
	if !m.takesInput() {
		// The call fails at once: nothing was asked.
		w.refused(o, ErrNoSuchServer, ServerID{})
		return
	}
	rt := actor.ReplyTo{Node: "client", ID: uint64(o.id)<<8 | uint64(try&0xff)}
	w.tracef("request %s op=%d try=%d", m.id.Name, o.id, try)
	switch {
	case o.poison:
		m.host.queueCommand(&commandReq{Data: []byte("panic")}, rt)
	case o.put:
		req := &commandReq{Data: []byte("set " + o.key + " " + o.value)}
		if o.sessSeq > 0 {
			req.Session, req.Client, req.Seq, req.Responded = true, c.clientID, o.sessSeq, c.done
		}
		m.host.queueCommand(req, rt)
	default:
		m.host.query(&queryReq{Kind: core.QueryConsistent, Query: []byte("get " + o.key)}, rt)
	}
	w.afterInput(m)
}

// replyToClient carries a server's answer back to the client whose call it
// answers; replies may be lost like any message.
func (w *hsWorld) replyToClient(rt actor.ReplyTo, msg actor.Message) {
	if rt.Node != "client" {
		return // an operator's request (membership, transfer): no one waits
	}
	id, try := int(rt.ID>>8), int(rt.ID&0xff)
	for _, c := range w.clients {
		if o := c.cur; o != nil && o.id == id {
			if !w.healed && w.rng.Float64() < 0.03 {
				return
			}
			cp, err := actor.Roundtrip(msg)
			if err != nil {
				w.violate("reply %T does not cross the wire: %v", msg, err)
				return
			}
			w.schedule(1+w.rng.Int64N(w.maxDelayMs), hsReply{op: o, try: try, msg: cp})
			return
		}
	}
}

func (w *hsWorld) clientReply(ev hsReply) {
	o := ev.op
	c := w.clients[o.client]
	if c.cur != o || o.try != ev.try {
		return
	}
	target := w.members[o.target].id
	var err error
	var leader ServerID
	var out kvmodel.Output
	switch r := ev.msg.(type) {
	case *commandResult:
		err, leader = r.Err.err(target), r.Leader
	case *queryResult:
		err, leader = r.Err.err(target), r.Leader
		if err == nil {
			out = kvmodel.Output{Found: len(r.Reply) > 0, Value: string(r.Reply)}
		}
	default:
		w.violate("client got %T", ev.msg)
		return
	}
	w.tracef("reply op=%d err=%v", o.id, err)
	switch {
	case err == nil && o.poison:
		w.violate("a poison command was answered without an error")
	case err == nil:
		if o.sessSeq > 0 {
			c.done = max(c.done, o.sessSeq)
		}
		c.leader = o.target
		w.finish(o, out, "ok")
	case o.poison && errors.Is(err, ErrMachine):
		w.stats.Poisoned++
		w.finish(o, out, "failed")
	default:
		w.refused(o, err, leader)
	}
}

// refused follows the API's rule for a request not served: a named leader
// is asked at once, a request not served goes back to via after a pause,
// any other answer stands.
func (w *hsWorld) refused(o *hsOp, err error, leader ServerID) {
	var named ServerID
	if nl := (*NotLeaderError)(nil); errors.As(err, &nl) {
		named = nl.Leader
	}
	if named.IsZero() {
		named = leader
	}
	via, target := w.members[o.via].id, w.members[o.target].id
	switch refusal(err, named, target, via, o.redirects) {
	case refusalFollow:
		ti, ok := w.byName[named.Name]
		if !ok {
			w.violate("a member named %s as leader, which is not one", named)
			return
		}
		w.stats.Redirects++
		o.redirects++
		o.target = ti
		o.try++
		w.schedule(1, hsSendOp{op: o, try: o.try})
	case refusalRetry:
		o.redirects = 0
		o.target = o.via
		o.try++
		w.schedule(10+w.rng.Int64N(40), hsSendOp{op: o, try: o.try})
	default:
		// The outcome stands. Errors that say the command was not
		// appended end it as failed; others leave it unknown.
		if errors.Is(err, ErrShuttingDown) || errors.Is(err, ErrNoSuchServer) {
			w.finish(o, kvmodel.Output{}, "failed")
			return
		}
		w.unknownOutcome(o)
	}
}

// clientTimeout: no answer came in time. A session put is sent again with
// the same sequence number, which must take effect at most once; other
// operations end with an unknown outcome.
func (w *hsWorld) clientTimeout(ev hsTimeout) {
	o := ev.op
	c := w.clients[o.client]
	if c.cur != o || o.try != ev.try {
		return
	}
	w.tracef("timeout op=%d", o.id)
	w.unknownOutcome(o)
}

func (w *hsWorld) unknownOutcome(o *hsOp) {
	c := w.clients[o.client]
	o.uncertain = true
	if o.sessSeq > 0 && !w.healed && o.try < 200 {
		// Retry through any member, same session and sequence number.
		o.try++
		o.redirects = 0
		o.via = w.anyMember()
		o.target = o.via
		w.schedule(5+w.rng.Int64N(50), hsSendOp{op: o, try: o.try})
		return
	}
	c.leader = -1
	w.finish(o, kvmodel.Output{}, "unknown")
}

func (w *hsWorld) finish(o *hsOp, out kvmodel.Output, how string) {
	c := w.clients[o.client]
	if how == "failed" && o.uncertain {
		how = "unknown"
	}
	switch how {
	case "ok":
		w.stats.OpsOK++
		if !o.poison {
			w.history = append(w.history, porcupine.Operation{ClientId: o.client,
				Input: kvmodel.Input{Put: o.put, Key: o.key, Value: o.value}, Call: o.call, Output: out, Return: w.now})
		}
	case "failed":
		w.stats.OpsFailed++
	case "unknown":
		w.stats.OpsUnknown++
		if o.put && !o.poison {
			w.unknown = append(w.unknown, o)
		}
	}
	c.cur = nil
	w.schedule(1+w.rng.Int64N(20), hsClientNext{c: c.idx})
}
