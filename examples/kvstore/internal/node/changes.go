package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"

	"github.com/rago-raft/rago/examples/kvstore/internal/api"
	"github.com/rago-raft/rago/examples/kvstore/internal/kv"
	"github.com/rago-raft/rago/raftserver"
)

// watchWindow is how many log entries the node's log watch takes ahead:
// it only learns from them that its member applied more.
const watchWindow = 256

// handleWatch streams the changes of the keys with a prefix, from a
// revision on (default: from now), as JSON lines, until the client goes.
// The changes come from this node's member's machine, which keeps the
// latest ones (kv.HistoryChanges) with their values: every change once, in
// revision order, whoever leads, because revisions are log indexes. The
// node learns that its member applied more from rago's log watch
// (raftserver.WatchLog). The effective start is in the
// X-Kvstore-From-Revision header, for a client that resumes elsewhere.
func (n *Node) handleWatch(w http.ResponseWriter, r *http.Request) {
	prefix := r.URL.Query().Get("prefix")
	var from uint64
	if s := r.URL.Query().Get("from_revision"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil || v == 0 {
			n.fail(w, badArg("from_revision must be a revision from 1 on, not %q", s))
			return
		}
		from = v
	}
	ctx := r.Context()
	if from == 0 {
		a, e := n.changes(ctx, prefix, math.MaxUint64)
		if e != nil {
			n.fail(w, e)
			return
		}
		from = a.Through + 1
	}
	a, e := n.changes(ctx, prefix, from)
	if e != nil {
		n.fail(w, e)
		return
	}
	if from < a.Since {
		n.fail(w, compacted(from, a.Since))
		return
	}
	logs, err := n.sys.WatchLog(ctx, n.self, a.Through+1, watchWindow)
	if err != nil {
		n.fail(w, n.raftError(err, false))
		return
	}
	defer func() { logs.Close() }()

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Kvstore-From-Revision", strconv.FormatUint(from, 10))
	w.WriteHeader(http.StatusOK)
	flush := http.NewResponseController(w).Flush
	enc := json.NewEncoder(w)
	end := func(e *api.Error) {
		e.Node = n.cfg.ID
		_ = enc.Encode(api.WatchEvent{Error: e})
	}
	next := from
	for {
		if next < a.Since {
			// The reader fell behind the history.
			end(compacted(next, a.Since))
			return
		}
		for _, c := range a.Changes {
			ev := api.WatchEvent{Revision: c.Revision, Key: c.Key, Op: c.Op}
			if c.Op == kv.OpPut {
				e := api.NewEntry(c.Key, c.Value, c.Revision, 0)
				ev.Value, ev.ValueBase64 = e.Value, e.ValueBase64
			}
			if err := enc.Encode(ev); err != nil {
				return // the client went
			}
		}
		if err := flush(); err != nil {
			return // the client went
		}
		next = max(next, a.Through+1)
		if !a.More {
			// Wait until the member applied more.
			select {
			case _, ok := <-logs.C:
				if !ok {
					var ce *raftserver.CompactedError
					if !errors.As(logs.Err(), &ce) {
						end(n.raftError(fmt.Errorf("the watch of this node's member ended: %w", logs.Err()), false))
						return
					}
					// The member took a snapshot from its leader: its
					// machine (and its history) moved on at once.
					if logs, err = n.sys.WatchLog(ctx, n.self, ce.First, watchWindow); err != nil {
						end(n.raftError(err, false))
						return
					}
				}
			case <-ctx.Done():
				return
			case <-n.stopCtx.Done():
				end(&api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeShuttingDown, Message: "the node is shutting down"})
				return
			}
			drain(logs.C)
		}
		if a, e = n.changes(ctx, prefix, next); e != nil {
			end(e)
			return
		}
	}
}

// drain takes what c holds now without waiting.
func drain(c <-chan raftserver.LogEntry) {
	for {
		select {
		case _, ok := <-c:
			if !ok {
				return
			}
		default:
			return
		}
	}
}

// changes asks this node's member's machine for the changes from a
// revision on.
func (n *Node) changes(ctx context.Context, prefix string, from uint64) (kv.Answer, *api.Error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	b, _ := json.Marshal(kv.Query{Op: kv.QueryChanges, Prefix: prefix, From: from})
	reply, _, err := n.sys.LocalQuery(ctx, n.self, b)
	if err != nil {
		return kv.Answer{}, n.raftError(err, false)
	}
	var a kv.Answer
	if err := json.Unmarshal(reply, &a); err != nil {
		return kv.Answer{}, &api.Error{Status: http.StatusInternalServerError, Code: api.CodeInternal, Message: "the machine's answer does not decode: " + err.Error()}
	}
	return a, nil
}

func compacted(from, since uint64) *api.Error {
	return &api.Error{Status: http.StatusGone, Code: api.CodeCompacted, Since: since,
		Message: fmt.Sprintf("changes from revision %d are no longer kept here (the oldest is %d): read the keys, then watch from the revision after", from, since)}
}
