// Package core is rago's Raft: a pure, deterministic state machine with no
// clocks, goroutines, disks or network of its own.
//
// The server actor around it feeds Events into Step and executes the Actions
// that Step returns, in order. Everything the core needs from outside arrives
// as an event (messages from peers, "your log wrote up to here", timer
// expiries, failure-detector notices, client requests); everything it wants
// done leaves as an action (persist term and vote, append to the local log,
// send to a peer, apply committed entries, answer a client, arm a timer).
//
// Roles follow Ra: follower, pre_vote, candidate and leader. Pre-vote is
// always on. Elections are started by events from outside the core (leader
// down, node suspected, an election timer the core asked for), never by
// per-cluster heartbeats, so an idle cluster whose followers are in sync
// exchanges no messages and asks for no timers.
//
// Randomness (election jitter) comes from Config.Seed only, so a run is a
// pure function of its configuration and the sequence of events. The
// simulation in package sim relies on this to replay a failing seed exactly.
//
// See docs/raft-core.md for the internals: ordering rules, replication and
// repair, pre-vote, check-quorum, membership, leader transfer and queries.
package core
