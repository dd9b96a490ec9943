package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"path"
	"sort"
)

// errLost means whole batches are missing between two files: the earlier
// file lost its end. That is never a torn tail.
var errLost = errors.New("batches missing")

// recovered is what start-up learns from the WAL directory.
type recovered struct {
	files    []*ClosedFile     // every existing file, oldest first, tables rebuilt
	nextFile uint64            // sequence for the first new file
	batchSeq uint64            // sequence of the last good batch
	last     map[string]uint64 // last index per UID found in the files
}

// recoverDir reads every WAL file in order and rebuilds the mem tables into
// tables. A damaged tail of the last file (nothing valid after the damage)
// is cut at the end of the last good batch, made durable, and logged. Any
// other damage returns a *CorruptionError: nothing is skipped silently.
func recoverDir(cfg Config, tables *MemTables) (recovered, error) {
	rec := recovered{nextFile: 1, last: map[string]uint64{}}
	if err := cfg.FS.MkdirAll(cfg.Dir); err != nil {
		return rec, fmt.Errorf("wal: create dir %s: %w", cfg.Dir, err)
	}
	names, err := cfg.FS.List(cfg.Dir)
	if err != nil {
		return rec, fmt.Errorf("wal: list %s: %w", cfg.Dir, err)
	}
	var seqs []uint64
	for _, name := range names {
		if name == spareName || isFreeName(name) {
			// A prepared next file, or one kept to be written over: the
			// WAL prepares new ones.
			if err := cfg.FS.Remove(path.Join(cfg.Dir, name)); err != nil {
				return rec, fmt.Errorf("wal: remove %s: %w", name, err)
			}
			continue
		}
		if seq, ok := parseFileName(name); ok {
			seqs = append(seqs, seq)
		} else {
			cfg.Logger.Warn("ignoring unknown file in wal dir", "dir", cfg.Dir, "name", name)
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for i, seq := range seqs {
		cf, err := recoverFile(cfg, tables, seq, i == len(seqs)-1, &rec)
		if err != nil {
			return rec, err
		}
		rec.nextFile = seq + 1
		if cf != nil {
			rec.files = append(rec.files, cf)
		}
	}
	for _, cf := range rec.files {
		for _, t := range cf.Tables {
			if idx, _, ok := t.Log.View().Last(); ok {
				rec.last[t.UID] = idx
			}
		}
	}
	return rec, nil
}

// recoverFile replays one file into the mem tables.
func recoverFile(cfg Config, tables *MemTables, seq uint64, isLast bool, rec *recovered) (*ClosedFile, error) {
	name := path.Join(cfg.Dir, fileName(seq))
	data, err := cfg.FS.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("wal: read %s: %w", name, err)
	}
	cf := &ClosedFile{Seq: seq, Path: name}
	touched := map[*MemLog]struct{}{}
	off, damage := 0, error(nil)
	if len(data) == 0 {
		damage = fmt.Errorf("%w: empty file", errShort)
	} else {
		off, damage = replay(data, seq, len(rec.files) > 0, tables, touched, &rec.batchSeq)
	}
	if damage != nil {
		if !isLast || errors.Is(damage, errLost) || errors.Is(damage, ErrUnknownVersion) {
			return nil, &CorruptionError{File: name, Offset: int64(off), Reason: damage}
		}
		// From off itself: the batch there failed as the header's version
		// says, and if it reads as the other, the header is what is damaged.
		if at, found := findValidBatch(data, off, seq); found {
			return nil, &CorruptionError{File: name, Offset: int64(off), Reason: fmt.Errorf("%w, and a valid batch follows at offset %d", damage, at)}
		}
		if off <= fileHeaderLen {
			// Not even the header survived: the process died while
			// creating the file, before anything in it was acknowledged.
			// Remove it, so that an empty file can only ever mean damage.
			if err := removeDurably(cfg, name); err != nil {
				return nil, err
			}
			cfg.Logger.Warn("wal: removed torn new file", "file", name, "bytes", len(data), "reason", damage.Error())
			return nil, nil
		}
		if err := cfg.FS.Truncate(name, int64(off)); err != nil {
			return nil, fmt.Errorf("wal: cut torn tail of %s at offset %d: %w", name, off, err)
		}
		cfg.Logger.Warn("wal: cut torn tail", "file", name, "offset", off, "dropped_bytes", len(data)-off, "reason", damage.Error())
	}
	if f, err := parseFileHeader(data); err == nil && !f.v1 {
		cf.recyclable = true
	}
	for log := range touched {
		if t := log.tableOf(seq); t != nil {
			cf.Tables = append(cf.Tables, closedTable(log, t))
		}
	}
	sort.Slice(cf.Tables, func(i, j int) bool { return cf.Tables[i].UID < cf.Tables[j].UID })
	return cf, nil
}

// replay applies every good batch of one file's data to the mem tables. It
// returns the offset where damage starts and what it is, or a nil error if
// the whole file is good. off is always the end of the last good batch
// (or 0 for a bad file header). If continues, the file follows another
// recovered file and its first batch must continue that file's sequence:
// a file that lost whole batches at its end is damaged too. Zeros from the
// end of a batch to the end of the file are the unused part of a
// preallocated file, not damage: lost batches there are caught by that
// same check in the next file.
func replay(data []byte, seq uint64, continues bool, tables *MemTables, touched map[*MemLog]struct{}, batchSeq *uint64) (off int, damage error) {
	f, err := parseFileHeader(data)
	if err != nil {
		return 0, err
	}
	if f.seq != seq {
		return 0, fmt.Errorf("%w: file header says sequence %d", errBad, f.seq)
	}
	off = fileHeaderLen
	first := true
	for off < len(data) {
		h, recs, n, _, err := decodeBatch(data[off:], f)
		if err != nil {
			if !first && allZero(data[off:]) {
				break
			}
			return off, err
		}
		if first && continues && h.seq != *batchSeq+1 {
			return off, fmt.Errorf("%w: first batch %d does not follow batch %d that ends the previous file", errLost, h.seq, *batchSeq)
		}
		if !first && h.seq != *batchSeq+1 || h.seq <= *batchSeq {
			return off, fmt.Errorf("%w: batch sequence %d after %d", errBad, h.seq, *batchSeq)
		}
		first = false
		*batchSeq = h.seq
		applyBatch(seq, int64(off+f.headerLen()), recs, tables, touched)
		off += n
	}
	if first {
		// The header is written together with the first batch, so a
		// file without batches is torn.
		return off, fmt.Errorf("%w: file has no batch", errShort)
	}
	return off, nil
}

// applyBatch publishes a decoded batch, whose records start at offset
// off of the file, the way the live WAL does: each UID's writes of the
// batch, in order, in one publish.
func applyBatch(file uint64, off int64, recs []record, tables *MemTables, touched map[*MemLog]struct{}) {
	byUID := map[string][]memWrite{}
	var order []string
	at := off
	for _, r := range recs {
		if _, ok := byUID[r.uid]; !ok {
			order = append(order, r.uid)
		}
		e := Entry{Index: r.index, Term: r.term, Payload: r.payload}
		byUID[r.uid] = append(byUID[r.uid], memWrite{Entry: e, reset: r.reset, off: at})
		at += int64(recordLen(r.uid, &e))
	}
	for _, uid := range order {
		log := tables.getOrCreate(uid)
		log.publish(file, byUID[uid])
		touched[log] = struct{}{}
	}
}

// findValidBatch looks for a complete, checksum-valid batch of file seq
// starting at or after from. Finding one after damage means the damage is
// not a torn tail: the WAL syncs each batch before writing the next, so a
// good batch behind a bad one proves the bad one had been synced. The
// batches of an older file that this one was written over (see Recycle)
// are bound to that file's number and do not count.
//
// Both versions are looked for, whatever the header says: a damaged
// version byte must not hide the batches after it. Only files of version 2
// are written over, and a batch of version 2 does not read as one of
// version 1 (its records start 4 bytes later than such a header says).
func findValidBatch(data []byte, from int, seq uint64) (int, bool) {
	formats := []fileFormat{{seq: seq}, {v1: true, seq: seq}}
	var magic [4]byte
	binary.LittleEndian.PutUint32(magic[:], batchMagic)
	for from < len(data) {
		i := bytes.Index(data[from:], magic[:])
		if i < 0 {
			return 0, false
		}
		at := from + i
		for _, f := range formats {
			if _, _, _, _, err := decodeBatch(data[at:], f); err == nil {
				return at, true
			}
		}
		from = at + 1
	}
	return 0, false
}

// removeDurably deletes name and syncs the directory.
func removeDurably(cfg Config, name string) error {
	if err := cfg.FS.Remove(name); err != nil {
		return fmt.Errorf("wal: remove %s: %w", name, err)
	}
	if err := cfg.FS.SyncDir(cfg.Dir); err != nil {
		return fmt.Errorf("wal: sync dir %s: %w", cfg.Dir, err)
	}
	return nil
}

// zeroChunk is what allZero compares with; never written to.
var zeroChunk [4096]byte

// allZero reports whether every byte of b is zero.
func allZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroChunk))
		if !bytes.Equal(b[:n], zeroChunk[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}
