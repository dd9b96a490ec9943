// Package wal is the node-wide write-ahead log of rago: one process per
// node through which every Raft server on the node writes its log, so that
// the node does one fdatasync per batch of writes instead of one per
// server. See docs/storage.md for the full picture.
//
// # Use
//
// A server registers its UID and the process that gets notifications,
// then writes asynchronously and reads its entries without messaging:
//
//	w, _ := wal.Start(node, wal.DefaultConfig(dir), wal.StartOptions{SegmentWriter: sw.Ref()})
//	wr, _ := w.Register(uid, self)          // notifications go to self
//	err := wr.Write(wal.Entry{Index: 8, Term: 2, Payload: p})
//	// later, in self's mailbox: wal.Written{UID: uid, Term: 2, From: 8, To: 8}
//	e, presence := wr.Mem().View().Get(8) // lock-free read of the mem tables
//
// Write returns ErrBackpressure when the writer has too much in flight; a
// write that would leave a gap is answered with OutOfSequence; a failed
// disk with WriteFailed. A write at or below the last index overwrites the
// suffix from there.
//
// # File format
//
// Files are named %020d.wal after their sequence number. All integers are
// little endian; CRC32C is Castagnoli. A file is a header, then batches:
//
//	file header (16 bytes)
//	+--------------------------------+---------------------+
//	| "ragowal" 0x02 (magic+version) | file sequence u64   |
//	+--------------------------------+---------------------+
//	  0                              8                     16
//
//	batch header (28 bytes), followed by body-length bytes of records
//	+--------+-----------+-------------+--------+----------------+--------------+
//	| "RGWB" | batch seq | body length | count  | records digest | CRC32C 0..24 |
//	| u32    | u64       | u32         | u32    | u32            | u32          |
//	+--------+-----------+-------------+--------+----------------+--------------+
//	  0        4           12            16       20               24             28
//	  both checksums start from the file sequence (8 bytes) before what they
//	  cover; the digest covers the records' CRCs, in order. Version 1 files
//	  ("ragowal" 0x01) have 24-byte headers, CRC of 0..20, no digest: they
//	  are still read.
//
//	record (26 + U + P bytes)
//	+--------+---------+---------+---------+-------+-------+-------+---------+
//	| CRC32C | P (u32) | index   | term    | flags | U (u8)| uid   | payload |
//	|        |         | u64     | u64     | u8    |       | U B   | P B     |
//	+--------+---------+---------+---------+-------+-------+-------+---------+
//	  0        4         8         16        24      25      26      26+U
//	  the record CRC covers bytes 4 .. 26+U+P; flags bit 0: the UID's log
//	  restarts at this index (WriteReset); other bits must be zero.
//
// Batch sequence numbers are consecutive across the whole WAL. The flusher
// syncs each batch before writing the next, so only the last batch of the
// last file can be torn; recovery cuts such a tail and refuses any other
// damage with a *CorruptionError naming the file and offset. A file may end
// in zeros after its last batch: it started in a preallocated spare (see
// Config.PreallocateBytes) and was not cut yet. The last file may also end
// in an older file's bytes: it started over a recycled file (see
// ClosedFile.Recycle); bound to the older file's number, its batches are
// never read as this file's, and recovery cuts them.
package wal
