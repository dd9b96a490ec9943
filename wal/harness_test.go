package wal

import (
	"testing"

	"github.com/rago-raft/rago/wal/walfs"
	"github.com/stretchr/testify/require"
)

// harness drives the core and file writer synchronously, the way the actor
// shell does, so the WAL's logic is tested without actors or goroutines.
type harness struct {
	t       testing.TB
	fs      walfs.FS
	cfg     Config
	o       *opened
	writers map[string]*Writer
	notes   map[string][]any // notifications per UID, in order
	closed  []*ClosedFile    // recovered and rolled files, oldest first
}

func testConfig(fs walfs.FS) Config {
	cfg := DefaultConfig("/wal")
	cfg.FS = fs
	cfg.MaxFileBytes = 4 << 10
	cfg.MaxClosedFiles = 1000 // tests that release files themselves lower it
	return cfg
}

func openHarness(t testing.TB, cfg Config) *harness {
	t.Helper()
	h, err := tryOpenHarness(t, cfg)
	require.NoError(t, err)
	return h
}

func tryOpenHarness(t testing.TB, cfg Config) (*harness, error) {
	o, err := open(cfg)
	if err != nil {
		return nil, err
	}
	return &harness{t: t, fs: cfg.FS, cfg: cfg, o: o, writers: map[string]*Writer{}, notes: map[string][]any{}, closed: o.files}, nil
}

func (h *harness) writer(uid string) *Writer {
	w := h.writers[uid]
	if w == nil {
		var err error
		w, err = h.o.newWriter(uid, uid, func(m writeMsg) error {
			h.deliver(h.o.core.stage(m))
			return nil
		})
		require.NoError(h.t, err)
		h.writers[uid] = w
	}
	return w
}

func (h *harness) deliver(ns []notice) {
	for _, n := range ns {
		uid := n.to.target.(string)
		h.notes[uid] = append(h.notes[uid], n.msg)
	}
}

// flush runs every pending batch through the file writer.
func (h *harness) flush() {
	for {
		b := h.o.core.cut()
		if b == nil {
			return
		}
		err := h.o.fw.write(b)
		ns, cf := h.o.core.complete(b, err)
		h.deliver(ns)
		if cf != nil {
			h.closed = append(h.closed, cf)
		}
	}
}

// take returns and clears the notifications of uid.
func (h *harness) take(uid string) []any {
	n := h.notes[uid]
	delete(h.notes, uid)
	return n
}

// releaseClosed plays the segment writer for files that are "flushed":
// it drops their tables and removes them.
func (h *harness) releaseClosed() { h.release((*ClosedFile).Remove) }

// release drops the closed files' tables and lets them go with done.
func (h *harness) release(done func(*ClosedFile) error) {
	for _, cf := range h.closed {
		for _, t := range cf.Tables {
			t.Log.DropFile(cf.Seq)
		}
		require.NoError(h.t, done(cf))
	}
	h.closed = nil
}

func (h *harness) close() { require.NoError(h.t, h.o.fw.stop()) }

func ent(index, term uint64, payload string) Entry {
	return Entry{Index: index, Term: term, Payload: []byte(payload)}
}
