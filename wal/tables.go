package wal

import (
	"fmt"
	"sync"
)

// MemTables is the node-wide registry of MemLogs, one per UID. Lookups
// take a read lock on the map only; reading a MemLog itself is lock-free.
type MemTables struct {
	mu   sync.RWMutex
	logs map[string]*MemLog
}

func newMemTables() *MemTables { return &MemTables{logs: map[string]*MemLog{}} }

// Get returns the MemLog of uid, or nil if the WAL holds nothing for it.
func (m *MemTables) Get(uid string) *MemLog {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.logs[uid]
}

func (m *MemTables) getOrCreate(uid string) *MemLog {
	if l := m.Get(uid); l != nil {
		return l
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.logs[uid]
	if l == nil {
		l = newMemLog(uid)
		m.logs[uid] = l
	}
	return l
}

func (m *MemTables) remove(uid string) *MemLog {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.logs[uid]
	delete(m.logs, uid)
	return l
}

// ClosedFile is a WAL file that will get no more writes, handed to the
// segment writer with the tables written into it. The segment writer
// makes the tables durable in segments, then calls Tables[i].Log.DropFile
// for each, then removes the file with Remove. Files must be flushed in
// Seq order. The segment store may keep the file itself under another
// name (a hard link): the WAL never changes a closed file's bytes.
type ClosedFile struct {
	Seq     uint64        // the file's sequence number
	Path    string        // its path, for logs
	Tables  []ClosedTable // in UID order; may be empty
	remove  func() error
	recycle func() error // nil: the file cannot be written over
	// recyclable: recovery found the file in the current format, which
	// binds batches to their file, so that it may be written over.
	recyclable bool
}

// Remove deletes the file durably. Call it only after every table is
// durable in segments (or covered by a snapshot) and dropped from its
// MemLog: a WAL file is the only copy of its entries until then.
func (cf *ClosedFile) Remove() error {
	if cf.remove == nil {
		return fmt.Errorf("%w: closed file %s has no owner to remove it", ErrInvalid, cf.Path)
	}
	return cf.remove()
}

// Recycle is Remove for a file that no other name links to (the segment
// store copied its entries instead of keeping the file): the WAL keeps a
// few such files (Config.RecycleFiles) and starts later files over them
// instead of filling new ones with zeros. Where it cannot, it removes the
// file. Call it under the same rule as Remove, and never for a file the
// segment store links to: its bytes would be written over.
func (cf *ClosedFile) Recycle() error {
	if cf.recycle == nil {
		return cf.Remove()
	}
	return cf.recycle()
}

// ClosedTable is one UID's entries in a closed file: the run
// First..First+Entries.Len()-1. In segments it replaces every entry of the
// UID at index >= First, or, if Reset, every entry of the UID.
type ClosedTable struct {
	UID     string
	Log     *MemLog // where to DropFile once the entries are durable
	First   uint64
	Reset   bool
	Entries Entries // immutable; shared with readers
}

func closedTable(log *MemLog, t *table) ClosedTable {
	return ClosedTable{UID: log.uid, Log: log, First: t.lo, Reset: t.reset, Entries: tableEntries(t)}
}
