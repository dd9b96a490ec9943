// Package snapshot keeps the snapshots of a node's Raft servers: the
// on-disk format, the per-node Store, the snapshot writer process that
// persists a machine's state in the background, and the chunked transfer
// of a snapshot from a leader's server to a follower's. It knows nothing
// of Raft: a snapshot is (UID, index, term, an opaque meta blob, the
// machine's data as a byte stream). See docs/snapshots.md for the full
// picture; what follows is the reference.
//
// # Pieces and who uses them
//
//   - Store (one per node, safe for concurrent use): Begin/Pending to write
//     a snapshot, Latest to find the newest one that verifies at start-up,
//     Open to read one, Verify, List, Delete.
//   - Writer (one process per node, StartWriter): servers send it Write
//     with a Source (a point-in-time view of the machine); it answers
//     Written or WriteFailed.
//   - Sender and Receiver (one per transfer / per server, owned by the
//     server's goroutine): pure state machines that exchange Chunk and
//     ChunkAck messages, which the servers carry between nodes.
//
// # Threading rules
//
// The server goroutine owns its Sender and Receiver: they are not safe for
// concurrent use, start no goroutines, read no clock (the server passes
// now and calls Tick on a timer) and do their file I/O on the calling
// goroutine (one ReadAt per chunk sent; one write per chunk received and
// one fsync at the end).
//
// A Source is created on the server goroutine at the snapshot index and
// then belongs to the writer: WriteTo runs on a writer job goroutine,
// concurrently with Apply; Release runs exactly once on a writer goroutine
// after WriteTo returned or instead of it. The Source's doc comment gives
// the rules a copy-on-write machine must follow.
//
// A Reader and a Pending are used by one goroutine at a time; any number
// of Readers may read the same snapshot at once, also while a newer
// snapshot is committed and prunes it (the open file stays readable).
//
// # File format
//
// One file per snapshot: <root>/<uid>/<index>-<term>.snap with index and
// term as 16 lower-case hex digits (so names sort by index). All integers
// are little endian; every checksum is CRC32C (Castagnoli). A file is a
// header, zero or more data blocks and a trailer:
//
//	header (44 + M bytes)
//	+----------+---------+-------+-------+-------+-------+--------+------+-------------+
//	| RAGOSNAP | version | flags | index | term  | id    | M      | meta | CRC32C of   |
//	| 8 bytes  | u16 = 1 | u16=0 | u64   | u64   | u64   | u32    | M B  | 0 .. 40+M   |
//	+----------+---------+-------+-------+-------+-------+--------+------+-------------+
//	  0          8         10      12      20      28      36       40     40+M       44+M
//
//	data block at file offset o (9 + L bytes), L in [1, MaxBlockBytes]
//	+------+-------+--------+------------------------------------------+
//	| 0x01 | L u32 | data   | CRC32C of (o as u64) ++ bytes o .. o+5+L |
//	+------+-------+--------+------------------------------------------+
//	  0      1       5        5+L                                    9+L
//
//	trailer (13 bytes), then end of file
//	+------+------------------+--------------------------------------+
//	| 0x02 | D u64 = sum of L | CRC32C of every byte before this one |
//	+------+------------------+--------------------------------------+
//	  0      1                  9                                    13
//
// index is at least 1; id is a random non-zero identity of this file's
// bytes (two files with equal index and term from different writers
// differ in id); meta is the server's blob (membership, machine version,
// sessions), at most MaxMetaBytes; flags must be zero. The data is the
// machine's byte stream cut into blocks (the Store writes
// Options.BlockBytes per block, the last one shorter).
//
// Why it detects every flipped bit and every truncation before data is
// used: the header, each block and the whole file carry their own
// CRC32C, which catches every error burst up to 32 bits in what it
// covers; a block's CRC also covers its own file offset, so a block moved
// or duplicated elsewhere does not verify; kinds 0x01/0x02 make a zeroed
// region invalid; the trailer must be present, count exactly the data
// bytes, and be the last 13 bytes. A Reader hands out a block's bytes only
// after the block verified and reports io.EOF only after the trailer did;
// Latest and Verify read every byte first.
//
// Files next to the .snap files: <index>-<term>.<random>.tmp (being
// written; renamed to .snap after fsync, then the directory is fsynced;
// removed by Open after a crash), <index>-<term>-<id>.part (being
// received; kept across restarts for resume) and <name>.snap.corrupt (set
// aside by Latest, removed with the next durable snapshot).
//
// # Transfer
//
// The transfer sends the snapshot file's bytes as they are, in chunks,
// so the receiver verifies exactly what the writer wrote, with the same
// code, as the bytes arrive, and a partial copy on disk can be checked
// and resumed after any interruption. Chunk and ChunkAck are registered
// with the actor codec (tags 170 and 171) and have AppendBinary/Decode
// functions for servers that embed them in messages of their own.
package snapshot
