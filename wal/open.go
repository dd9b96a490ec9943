package wal

import (
	"fmt"
	"path"
)

// opened is a WAL after recovery, before any actor exists: the core, the
// file writer, and the recovered files to hand to the segment writer.
type opened struct {
	cfg    Config
	tables *MemTables
	core   *core
	fw     *fileWriter
	files  []*ClosedFile
}

// open validates cfg, recovers the directory and builds the core. Both the
// actor shell and the tests start from here.
func open(cfg Config) (*opened, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if cfg.Sync == SyncNoneUnsafeForTests {
		cfg.Logger.Warn("wal: sync method none: acknowledged writes are NOT durable; tests only", "dir", cfg.Dir)
	}
	tables := newMemTables()
	rec, err := recoverDir(cfg, tables)
	if err != nil {
		return nil, err
	}
	c := newCore(cfg, tables, rec.nextFile, rec.batchSeq)
	fw := newFileWriter(cfg, &c.stats)
	c.removeFile = func(seq uint64) error { return removeDurably(cfg, path.Join(cfg.Dir, fileName(seq))) }
	c.recycleFile = func(seq uint64) error { return recycleFile(cfg, &fw.free, seq) }
	for uid, last := range rec.last {
		ws := c.writerState(uid)
		ws.known, ws.last = true, last
	}
	var entries int
	for _, f := range rec.files {
		f.remove = c.remover(f.Seq)
		if f.recyclable {
			f.recycle = c.recycler(f.Seq)
		}
		c.handedOver++
		for _, t := range f.Tables {
			entries += t.Entries.Len()
		}
	}
	cfg.Logger.Info("wal recovered", "dir", cfg.Dir, "files", len(rec.files), "entries", entries, "next_file", rec.nextFile)
	return &opened{
		cfg:    cfg,
		tables: tables,
		core:   c,
		fw:     fw,
		files:  rec.files,
	}, nil
}

// newWriter makes the handle of uid; send delivers its writes to the core.
func (o *opened) newWriter(uid string, target any, send func(writeMsg) error) (*Writer, error) {
	if err := ValidateUID(uid); err != nil {
		return nil, err
	}
	return &Writer{
		uid:        uid,
		log:        o.tables.getOrCreate(uid),
		target:     target,
		send:       send,
		maxEntries: int64(o.cfg.MaxInFlightEntries),
		maxBytes:   o.cfg.MaxInFlightBytes,
		maxPayload: o.cfg.MaxPayloadBytes,
	}, nil
}

// ValidateUID checks that uid is usable as a key and a file name: 1 to 255
// bytes of the base64url alphabet (A-Z a-z 0-9 - _).
func ValidateUID(uid string) error {
	if len(uid) == 0 || len(uid) > maxUIDLen {
		return fmt.Errorf("%w: uid length %d not in 1..%d", ErrInvalid, len(uid), maxUIDLen)
	}
	for i := 0; i < len(uid); i++ {
		c := uid[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("%w: uid %q has byte %q outside base64url", ErrInvalid, uid, c)
		}
	}
	return nil
}
