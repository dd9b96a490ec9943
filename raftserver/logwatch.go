package raftserver

import (
	"context"
	"fmt"
	"sync"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/internal/wire"
	"github.com/rago-raft/rago/raftserver/core"
)

// LogEntryKind says what a committed log entry is.
type LogEntryKind uint8

const (
	// LogCommand: a command for the machine; Command holds its bytes as
	// the client sent them. A command sent through a Session has Client
	// and Seq set: a session command sent again after an unknown outcome
	// can be in the log twice, and the machine applies a (Client, Seq)
	// once; a reader that applies commands must skip a Seq it has seen
	// for that Client.
	LogCommand LogEntryKind = iota + 1
	// LogObservation: an event the machine observed (a monitored process
	// or node went down, a timer fired; see Observer).
	LogObservation
	// LogMembership: a membership change.
	LogMembership
	// LogMachineVersion: the cluster's machine version went up.
	LogMachineVersion
	// LogNoop: a new leader's first entry.
	LogNoop
)

// LogEntry is one committed entry of a server's log, as WatchLog hands
// them out: every index once, in order.
type LogEntry struct {
	Index, Term uint64
	Kind        LogEntryKind
	// Command, Client and Seq are set for LogCommand entries.
	Command     []byte
	Client, Seq uint64
}

// CompactedError is the error of a log watch that asked for entries the
// server no longer holds: a snapshot replaced them. It matches
// ErrCompacted. A reader that needs everything from From starts again from
// a backup or a snapshot of the state at SnapshotIndex or later, and
// watches from First (or from the snapshot's index + 1).
type CompactedError struct {
	Server        ServerID
	From          uint64 // the index asked for
	First         uint64 // the first index the server's log holds
	SnapshotIndex uint64 // the index of its newest snapshot
}

func (e *CompactedError) Error() string {
	return fmt.Sprintf("raftserver: %s no longer holds log index %d: its log starts at %d, after its snapshot at %d", e.Server, e.From, e.First, e.SnapshotIndex)
}

// Is makes a CompactedError match ErrCompacted.
func (e *CompactedError) Is(target error) bool { return target == ErrCompacted }

// logWindowMax bounds a watch's window: entries in flight to one watcher.
const logWindowMax = 1 << 16

// maxLogWatchers bounds the watchers of one server, so that requests
// cannot grow its state without limit.
const maxLogWatchers = 1024

// logBatchBytes bounds the entries read for one batch to a watcher.
const logBatchBytes = 1 << 20

// Messages of a log watch. A watcher (LogWatcher's inbox process) asks a
// server with watchLogReq; the server answers watchLogResult, then sends
// logBatch messages while the watcher has credit, and logEnd if it ends
// the watch. The watcher gives credit back with logAck and ends the watch
// with unwatchLog. A watch is named by its watcher's process, which is
// unique across nodes (a counter of the watcher's node would not be: two
// nodes watching one server would take each other's place).
type (
	watchLogReq struct {
		From   uint64
		Window int
		Notify actor.Ref
	}
	watchLogResult struct {
		Err                  remoteError
		First, SnapshotIndex uint64 // for a compacted log
	}
	logBatch struct {
		Entries []LogEntry
	}
	logAck struct {
		Watcher actor.Ref
		N       int
	}
	unwatchLog struct{ Watcher actor.Ref }
	logEnd     struct {
		Err                  remoteError
		From                 uint64
		First, SnapshotIndex uint64
	}
)

// logSub is one watcher of a server's log.
type logSub struct {
	to     actor.Ref
	next   uint64 // next index to send
	credit int    // entries the watcher can still take
	mon    monitorID
}

// watchLog registers a watcher and sends what it can already.
func (s *server) watchLog(m *watchLogReq, rt actor.ReplyTo) {
	if m.From == 0 || m.Window < 1 || m.Window > logWindowMax || m.Notify.Name == "" {
		s.env.reply(rt, &watchLogResult{Err: toRemote(fmt.Errorf("%w: a log watch needs an index from 1 and a window in [1, %d] (from %d, window %d)", ErrInvalidConfig, logWindowMax, m.From, m.Window))})
		return
	}
	if first := s.log.FirstIndex(); m.From < first && m.From <= s.log.LastIndex() {
		s.env.reply(rt, &watchLogResult{Err: toRemote(ErrCompacted), First: first, SnapshotIndex: s.snap.info.Index})
		return
	}
	old := s.logSubs[m.Notify]
	if old == nil && len(s.logSubs) >= maxLogWatchers {
		s.env.reply(rt, &watchLogResult{Err: toRemote(fmt.Errorf("%w: %s already has %d log watchers", ErrInvalidConfig, s.self, maxLogWatchers))})
		return
	}
	if s.logSubs == nil {
		s.logSubs = map[actor.Ref]*logSub{}
	}
	if old != nil {
		s.env.demonitor(old.mon)
	}
	sub := &logSub{to: m.Notify, next: m.From, credit: m.Window, mon: s.env.monitor(m.Notify)}
	s.logSubs[m.Notify] = sub
	s.env.reply(rt, &watchLogResult{})
	s.pushLog(sub)
}

// pushLogs sends every watcher what it can take of the applied log.
func (s *server) pushLogs() {
	for _, sub := range s.logSubs {
		s.pushLog(sub)
	}
}

// pushLog sends sub the applied entries it can take. Only applied entries
// go out, so a watcher of a member sees what that member's machine saw.
func (s *server) pushLog(sub *logSub) {
	for sub.credit > 0 && sub.next <= s.applied {
		if first := s.log.FirstIndex(); sub.next < first {
			// The watcher lagged behind a snapshot.
			s.endLogWatch(sub, &logEnd{Err: toRemote(ErrCompacted), From: sub.next, First: first, SnapshotIndex: s.snap.info.Index})
			return
		}
		hi := min(s.applied, sub.next+uint64(sub.credit)-1)
		ents, err := s.raft.Entries(sub.next, hi+1, logBatchBytes)
		if err != nil || len(ents) == 0 {
			s.endLogWatch(sub, &logEnd{Err: toRemote(fmt.Errorf("%w: read log %d..%d for a watcher: %v", ErrStorage, sub.next, hi, err))})
			return
		}
		batch := make([]LogEntry, len(ents))
		for i, e := range ents {
			batch[i] = toLogEntry(e)
		}
		_ = s.env.send(sub.to, &logBatch{Entries: batch})
		sub.next = ents[len(ents)-1].Index + 1
		sub.credit -= len(ents)
	}
}

// logAcked gives a watcher credit back.
func (s *server) logAcked(m *logAck) {
	if sub := s.logSubs[m.Watcher]; sub != nil && m.N > 0 {
		sub.credit = min(sub.credit+m.N, logWindowMax)
		s.pushLog(sub)
	}
}

func (s *server) unwatchLog(watcher actor.Ref) {
	if sub := s.logSubs[watcher]; sub != nil {
		s.env.demonitor(sub.mon)
		delete(s.logSubs, watcher)
	}
}

// logWatcherDown forgets a watcher that exited; it reports whether mon was
// one of the watchers' monitors.
func (s *server) logWatcherDown(mon monitorID) bool {
	for w, sub := range s.logSubs {
		if sub.mon == mon {
			delete(s.logSubs, w)
			return true
		}
	}
	return false
}

func (s *server) endLogWatch(sub *logSub, end *logEnd) {
	_ = s.env.send(sub.to, end)
	s.unwatchLog(sub.to)
}

// endLogWatches tells every watcher that the server stops.
func (s *server) endLogWatches() {
	for _, sub := range s.logSubs {
		s.endLogWatch(sub, &logEnd{Err: toRemote(fmt.Errorf("%w: %s is stopping", ErrShuttingDown, s.self))})
	}
}

func toLogEntry(e core.Entry) LogEntry {
	le := LogEntry{Index: e.Index, Term: e.Term}
	switch e.Type {
	case core.EntryNoop:
		le.Kind = LogNoop
	case core.EntryConfig:
		le.Kind = LogMembership
	case core.EntryMachineVersion:
		le.Kind = LogMachineVersion
	default:
		cmd, err := decodeCommand(e.Data)
		switch {
		case err != nil:
			// Every member fails it the same way; the machine never saw
			// it, but a reader is told it is there.
			le.Kind = LogCommand
		case cmd.kind == cmdObservation:
			le.Kind = LogObservation
		default:
			le.Kind = LogCommand
			le.Command = append([]byte(nil), cmd.data...)
			if cmd.kind == cmdSession {
				le.Client, le.Seq = cmd.client, cmd.seq
			}
		}
	}
	return le
}

// LogWatcher follows a server's committed log (WatchLog). Entries arrive
// on C, every index once and in order; C is closed when the watch ends,
// and Err says why.
type LogWatcher struct {
	// C delivers the entries. Not reading it holds the server back: it
	// sends no more than the window beyond what was read.
	C <-chan LogEntry

	sys    *System
	server ServerID
	ib     *actor.Inbox
	out    chan LogEntry
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	err    error // set by run before done closes
}

// WatchLog follows the committed log of server, from index from on: each
// entry once, in order, as soon as server applied it. Commands, whoever
// leads, appear in the order they were committed; following one member's
// log across leader changes misses and repeats nothing. window bounds the
// entries sent ahead of what the caller read from C (back-pressure; 1 to
// 65536, 0 means 1024).
//
// If server no longer holds index from (a snapshot replaced it), WatchLog
// fails with a *CompactedError (ErrCompacted); so does a running watch
// whose reader fell behind a snapshot. A watch also ends when server stops
// (ErrShuttingDown), when it or its node is gone (ErrNoSuchServer,
// ErrUnreachable), or on Close (nil); resume it from the last index read +
// 1, on this member or another one. server may be on any node.
func (s *System) WatchLog(ctx context.Context, server ServerID, from uint64, window int) (*LogWatcher, error) {
	if window == 0 {
		window = 1024
	}
	ib, err := s.node.NewInbox()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrShuttingDown, err)
	}
	w := &LogWatcher{sys: s, server: server, ib: ib,
		out: make(chan LogEntry), stop: make(chan struct{}), done: make(chan struct{})}
	w.C = w.out
	ib.Monitor(Ref(server))
	res, err := s.call(ctx, server, &watchLogReq{From: from, Window: window, Notify: ib.Ref()})
	if err == nil {
		r := res.(*watchLogResult)
		err = logWatchError(server, r.Err, from, r.First, r.SnapshotIndex)
	}
	if err != nil {
		ib.Close()
		return nil, err
	}
	go w.run()
	return w, nil
}

// logWatchError turns the wire form of a watch's error into the error.
func logWatchError(server ServerID, r remoteError, from, first, snap uint64) error {
	if r.Code == codeCompacted {
		return &CompactedError{Server: server, From: from, First: first, SnapshotIndex: snap}
	}
	return r.err(server)
}

func (w *LogWatcher) run() {
	defer close(w.done)
	defer close(w.out)
	for {
		var m actor.Message
		select {
		case m = <-w.ib.C():
		case <-w.stop:
			return
		}
		switch m := m.(type) {
		case *logBatch:
			for _, e := range m.Entries {
				select {
				case w.out <- e:
				case <-w.stop:
					return
				}
			}
			_ = w.sys.node.Send(Ref(w.server), &logAck{Watcher: w.ib.Ref(), N: len(m.Entries)})
		case *logEnd:
			w.err = logWatchError(w.server, m.Err, m.From, m.First, m.SnapshotIndex)
			return
		case actor.Down:
			if m.Reason.Kind == actor.ReasonNoConnection {
				w.err = fmt.Errorf("%w: %s: the connection to its node broke", ErrUnreachable, w.server)
			} else {
				w.err = fmt.Errorf("%w: %s exited (%s)", ErrNoSuchServer, w.server, m.Reason)
			}
			return
		}
	}
}

// Err returns why the watch ended by itself, once C is closed; nil while
// it runs and when Close ended it.
func (w *LogWatcher) Err() error {
	select {
	case <-w.done:
		return w.err
	default:
		return nil
	}
}

// Close ends the watch and closes C. Call it also after the watch ended
// by itself: the watcher holds a process until then. It may be called
// more than once.
func (w *LogWatcher) Close() {
	w.once.Do(func() {
		close(w.stop)
		<-w.done
		_ = w.sys.node.Send(Ref(w.server), &unwatchLog{Watcher: w.ib.Ref()})
		w.ib.Close()
	})
}

func appendLogEntry(b []byte, e LogEntry) []byte {
	b = wire.AppendUvarint(b, e.Index)
	b = wire.AppendUvarint(b, e.Term)
	b = wire.AppendUint8(b, uint8(e.Kind))
	b = wire.AppendBytes(b, e.Command)
	b = wire.AppendUvarint(b, e.Client)
	return wire.AppendUvarint(b, e.Seq)
}

func readLogEntry(r *wire.Reader) LogEntry {
	return LogEntry{Index: r.Uvarint(), Term: r.Uvarint(), Kind: LogEntryKind(r.Uint8()), Command: r.BytesCopy(), Client: r.Uvarint(), Seq: r.Uvarint()}
}

func init() {
	register(130, func(b []byte, m *watchLogReq) []byte {
		b = wire.AppendUvarint(b, m.From)
		b = wire.AppendUvarint(b, uint64(m.Window))
		return appendRef(b, m.Notify)
	}, func(r *wire.Reader) *watchLogReq {
		return &watchLogReq{From: r.Uvarint(), Window: int(min(r.Uvarint(), logWindowMax+1)), Notify: readRef(r)}
	})
	register(131, func(b []byte, m *watchLogResult) []byte {
		b = appendRemote(b, m.Err)
		b = wire.AppendUvarint(b, m.First)
		return wire.AppendUvarint(b, m.SnapshotIndex)
	}, func(r *wire.Reader) *watchLogResult {
		return &watchLogResult{Err: readRemote(r), First: r.Uvarint(), SnapshotIndex: r.Uvarint()}
	})
	register(132, func(b []byte, m *logBatch) []byte {
		b = wire.AppendUvarint(b, uint64(len(m.Entries)))
		for _, e := range m.Entries {
			b = appendLogEntry(b, e)
		}
		return b
	}, func(r *wire.Reader) *logBatch {
		m := &logBatch{}
		m.Entries = make([]LogEntry, r.Len(6))
		for i := range m.Entries {
			m.Entries[i] = readLogEntry(r)
		}
		return m
	})
	register(133, func(b []byte, m *logAck) []byte {
		b = appendRef(b, m.Watcher)
		return wire.AppendUvarint(b, uint64(m.N))
	}, func(r *wire.Reader) *logAck {
		return &logAck{Watcher: readRef(r), N: int(min(r.Uvarint(), logWindowMax))}
	})
	register(134, func(b []byte, m *unwatchLog) []byte {
		return appendRef(b, m.Watcher)
	}, func(r *wire.Reader) *unwatchLog {
		return &unwatchLog{Watcher: readRef(r)}
	})
	register(135, func(b []byte, m *logEnd) []byte {
		b = appendRemote(b, m.Err)
		b = wire.AppendUvarint(b, m.From)
		b = wire.AppendUvarint(b, m.First)
		return wire.AppendUvarint(b, m.SnapshotIndex)
	}, func(r *wire.Reader) *logEnd {
		return &logEnd{Err: readRemote(r), From: r.Uvarint(), First: r.Uvarint(), SnapshotIndex: r.Uvarint()}
	})
}
