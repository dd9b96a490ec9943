package segment

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rago-raft/rago/wal"
)

// ownTableBytes is the payload from which one UID's run gets an sstable of
// its own. Such a table holds one UID's next indexes only, overlaps
// nothing in the store, and goes straight to the bottom level. Smaller
// runs share sstables: with thousands of servers a file per UID per flush
// would flood the store with tiny files. A shared sstable spans many
// UIDs' key ranges, so pebble puts it in level 0 and compacts it later;
// that costs little because such runs are small.
const ownTableBytes = 1 << 20

// ingestBlockBytes is the data block size of the sstables a flush writes.
const ingestBlockBytes = 32 << 10

// ingestBytesPerSync is how much of an sstable being written may wait in
// the page cache before it is handed to the disk.
const ingestBytesPerSync = 512 << 10

// ingestPrefix starts the names of the sstables a flush writes before
// handing them to pebble. Pebble links them in, and they are removed
// after; Open removes any that a crash left behind.
const ingestPrefix = "rago-ingest-"

// run is one UID's entries to write, contiguous and in index order. If
// refs is set, the run's WAL file is linked and refs[i] locates entry i in
// it: the sstable holds references instead of the entries.
type run struct {
	uid     string
	entries wal.Entries
	refs    []ref
}

func (r run) bytes() int { return int(r.entries.Bytes()) }

// ingest writes runs into synced sstables, in key order, and ingests them
// in one step: they become visible together, each with a sequence number
// above everything committed before. Runs of ownTableBytes or more get a
// file of their own; the runs between them share one, so that the files
// of one ingest never overlap each other. A linked file's record, if
// any, goes in a table of its own after them (its key sorts after every
// entry key), so that it is durable exactly when its references are.
func (s *Store) ingest(runs []run, linked *linkedFile) error {
	if len(runs) == 0 {
		return nil
	}
	// entryKey order is UID order: a UID never holds 0x00, and a shorter
	// UID that is a prefix of a longer one sorts first in both.
	slices.SortFunc(runs, func(a, b run) int { return strings.Compare(a.uid, b.uid) })
	var paths []string
	defer func() {
		for _, p := range paths {
			_ = s.fs.Remove(p)
		}
	}()
	var shared []run
	write := func(rs []run) error {
		if len(rs) == 0 {
			return nil
		}
		s.ingestSeq++
		p := s.fs.PathJoin(s.dir, fmt.Sprintf("%s%d.sst", ingestPrefix, s.ingestSeq))
		paths = append(paths, p)
		return s.writeTable(p, rs)
	}
	for _, r := range runs {
		if r.bytes() < ownTableBytes && r.refs == nil {
			shared = append(shared, r)
			continue
		}
		if err := write(shared); err != nil {
			return err
		}
		shared = shared[:0]
		if err := write([]run{r}); err != nil {
			return err
		}
	}
	if err := write(shared); err != nil {
		return err
	}
	if linked != nil {
		s.ingestSeq++
		p := s.fs.PathJoin(s.dir, fmt.Sprintf("%s%d.sst", ingestPrefix, s.ingestSeq))
		paths = append(paths, p)
		if err := s.writeRecordTable(p, linkKey(linked.id), linkValue(linked.uid, linked.first, linked.last)); err != nil {
			return err
		}
	}
	if err := s.db.Ingest(context.Background(), paths); err != nil {
		return fmt.Errorf("ingest %d sstables: %w", len(paths), err)
	}
	return nil
}

// writeTable writes rs, sorted by UID, into a new synced sstable at path.
func (s *Store) writeTable(path string, rs []run) (err error) {
	f, err := s.fs.Create(path, "")
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	// Hand the data to the disk as it is written, as pebble does with its
	// own sstables, rather than all of it at the final sync, where it
	// would compete at once with the WAL's syncs on the same disk.
	f = vfs.NewSyncingFile(f, vfs.SyncingFileOptions{BytesPerSync: ingestBytesPerSync})
	w := sstable.NewWriter(objstorageprovider.NewFileWritable(f), s.tableOptions)
	defer func() {
		if err != nil {
			_ = w.Close()
		}
	}()
	var key, value []byte
	for _, r := range rs {
		i := 0
		for e := range r.entries.All() {
			key = appendEntryKey(key[:0], r.uid, e.Index)
			if r.refs != nil {
				value = appendRef(value[:0], r.refs[i])
			} else {
				value = appendValue(value[:0], e.Term, e.Payload)
			}
			i++
			if err := w.Set(key, value); err != nil {
				return fmt.Errorf("write %s: %w", path, err)
			}
		}
	}
	// Close finishes the table and syncs the file before it returns.
	if err := w.Close(); err != nil {
		return fmt.Errorf("finish %s: %w", path, err)
	}
	return nil
}

// writeRecordTable writes a synced sstable holding one key.
func (s *Store) writeRecordTable(path string, key, value []byte) (err error) {
	f, err := s.fs.Create(path, "")
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	w := sstable.NewWriter(objstorageprovider.NewFileWritable(f), s.tableOptions)
	if err := w.Set(key, value); err != nil {
		_ = w.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("finish %s: %w", path, err)
	}
	return nil
}
