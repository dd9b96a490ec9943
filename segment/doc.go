// Package segment is the durable per-server log storage of a node and the
// segment writer process that fills it.
//
// The WAL hands each closed WAL file (*wal.ClosedFile) to the segment
// writer, which writes all of its mem tables into one pebble database (as
// synced sstables that pebble ingests, see Store.FlushFile), drops the
// mem tables, tells each server its new segment range (Flushed) and
// removes the WAL file. Servers read their log through Log, which looks in the WAL's mem
// tables first and in the store second. Store.Truncate drops entries a
// snapshot covers; Store.DeleteUID removes a deleted server's data.
//
// The key encoding (keys.go) is the store's on-disk format; see also
// docs/storage.md.
package segment
