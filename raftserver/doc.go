// Package raftserver runs Raft clusters on rago nodes: the node system
// (StartSystem), the server processes that run the Raft core
// (raftserver/core) over the node's shared WAL and segments, and the client
// API.
//
// # A node
//
// A System is one node: an actor node on host:port plus its storage (a
// write-ahead log shared by every server of the node, pebble segments, a
// meta store for terms, votes and the directory of servers), a leaderboard
// and a system manager process that starts and stops servers on behalf of
// local and remote callers. A node hosts any number of servers of any
// number of clusters, several members of one cluster included.
//
// # A write
//
//	ProcessCommand ─► leader server ─► core appends ─┬─► WAL batch + fdatasync ─► Written ─► leader counts itself
//	                                                 └─► AppendEntries ─► followers' WALs ─► replies
//	─► commit ─► Machine.Apply ─► reply to the caller (or Applied to a pipeline's notify process)
//
// The leader writes its entries to its WAL and sends them to its followers
// at the same time, so a command commits after one fdatasync and one round
// trip.
//
// # Clients
//
// ProcessCommand is synchronous and follows redirects to the leader.
// PipelineCommand is asynchronous: the notify process gets Applied (with
// the caller's correlation numbers and the replies, batched) or Rejected.
// Pipelined callers should keep a bounded window of correlations in flight
// (the benchmarks use 1000 per caller), send more as Applied arrives, and
// resend those Rejected with ErrNotLeader to the leader named. Commands of
// one caller sent to one leader are applied in the order sent.
//
// Clients that know the cluster name look the leader up in the node's
// Leaderboard first and fall back to any member, which redirects.
//
// # Machines
//
// A Machine applies committed commands deterministically. Commands and
// replies are bytes in the log; NewTypedMachine and TypedClient put Go
// types with a Codec on top. Machines that implement Querier answer
// ConsistentQuery (linearizable), LeaderQuery and LocalQuery; QueryFunc
// runs a Go function over a machine on this node. A machine is built by the
// factory registered for its kind in SystemConfig.Machines, on every node
// that hosts a member, also after a restart.
//
// A command that makes Apply panic gets an ErrMachine reply; the panic is
// logged with the entry's index, and every member meets it at the same
// index. The server then rebuilds the machine as it was before the command
// (from its newest snapshot and the log, skipping commands known to
// panic), so whatever the machine changed before panicking is undone.
//
// Machines that implement Snapshotter are snapshotted at release cursors
// (Effects.ReleaseCursor) as SnapshotPolicy decides; the log before a
// snapshot is dropped, and members far behind get the snapshot in chunks.
// Machines that implement Versioned change their logic at a log index
// agreed by the cluster, for rolling upgrades. See docs/machines.md.
package raftserver
