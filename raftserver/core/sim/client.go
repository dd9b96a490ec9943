package sim

import (
	"errors"
	"fmt"

	"github.com/anishathalye/porcupine"
	"github.com/rago-raft/rago/internal/kvmodel"
	"github.com/rago-raft/rago/raftserver/core"
)

// client issues one operation at a time, to the member it believes leads.
type client struct {
	idx    int
	leader int // member index of the believed leader, -1 if unknown
	cur    *op
	seq    int
}

type opKind uint8

const (
	opPut opKind = iota + 1
	opGet
	opLocalGet // exercised, but not part of the checked history
)

type op struct {
	id     int
	client int
	kind   opKind
	key    string
	value  string
	call   int64
	target int
	inc    int
	sent   bool
}

var keys = []string{"a", "b", "c"}

func (w *World) clientIssue(c *client) {
	if w.healed || c.cur != nil {
		return
	}
	c.seq++
	w.nextOpID++
	o := &op{id: w.nextOpID, client: c.idx, key: keys[w.rng.IntN(len(keys))], call: w.now}
	switch x := w.rng.IntN(10); {
	case x < 6:
		o.kind = opPut
		o.value = fmt.Sprintf("c%d-%d", c.idx, c.seq)
	case x < 9:
		o.kind = opGet
	default:
		o.kind = opLocalGet
	}
	o.target = c.leader
	if o.target < 0 || w.members[o.target].stopped || w.rng.IntN(8) == 0 {
		o.target = w.rng.IntN(len(w.members))
	}
	c.cur = o
	w.schedule(1+w.rng.Int64N(5), evRequest{c: c.idx, o: o})
	w.schedule(clientTimeoutMs, evTimeout{c: c.idx, o: o})
}

func (w *World) clientDeliver(c *client, o *op) {
	if c.cur != o {
		return
	}
	m := w.members[o.target]
	if !m.up {
		c.leader = -1
		w.finishFailed(o)
		return
	}
	o.sent = true
	o.inc = m.inc
	switch o.kind {
	case opPut:
		w.stepMember(m, core.Command{Data: encodePut(o.key, o.value), Token: o})
	case opGet:
		w.stepMember(m, core.Query{Kind: core.QueryConsistent, Token: o})
	case opLocalGet:
		w.stepMember(m, core.Query{Kind: core.QueryLocal, Token: o})
	}
}

// finishOK records a completed operation with its output.
func (w *World) finishOK(o *op, out kvmodel.Output) {
	c := w.clients[o.client]
	if c.cur != o {
		return // already given up on
	}
	w.stats.OpsOK++
	if o.kind != opLocalGet {
		w.history = append(w.history, porcupine.Operation{
			ClientId: o.client, Input: kvmodel.Input{Put: o.kind == opPut, Key: o.key, Value: o.value},
			Call: o.call, Output: out, Return: w.now,
		})
	}
	if o.kind != opLocalGet {
		c.leader = o.target
	}
	w.next_(c)
}

// finishFailed records an operation that certainly had no effect.
func (w *World) finishFailed(o *op) {
	c := w.clients[o.client]
	if c.cur != o {
		return
	}
	w.stats.OpsFailed++
	w.next_(c)
}

// finishUnknown records an operation whose effect is unknown: a put may or
// may not have happened, at any time after its call.
func (w *World) finishUnknown(c *client, o *op) {
	if c.cur != o {
		return
	}
	w.stats.OpsUnknown++
	if o.kind == opPut {
		w.unknown = append(w.unknown, o)
	}
	c.leader = -1
	w.next_(c)
}

func (w *World) next_(c *client) {
	c.cur = nil
	w.schedule(1+w.rng.Int64N(20), evClient{c: c.idx})
}

// isDefiniteFailure reports errors after which the command was certainly
// not appended.
func isDefiniteFailure(err error) bool {
	return errors.Is(err, core.ErrNotLeader) || errors.Is(err, core.ErrNoLeader) ||
		errors.Is(err, core.ErrTransferInProgress) || errors.Is(err, core.ErrMembershipChangePending)
}
