// Package sim is a deterministic, seeded simulation that tries to break
// package core: N members on a network that drops, duplicates, reorders and
// delays messages, partitions (both ways and one way), crashes members and
// restarts them with exactly the state they had made durable, changes the
// membership and transfers leadership under client load.
//
// Everything derives from one seeded source and a single event queue
// ordered by (simulated time, sequence number), so a seed replays the
// identical trace: Result.TraceHash is a digest of every event processed.
//
// After every event the simulation checks Raft's safety properties
// (election safety, log matching, leader completeness, state machine
// safety), that commit indexes never go back, that no acknowledged command
// is lost and that a durable vote is never forgotten. At the end it checks
// the clients' history against a key-value model for linearizability
// (porcupine) and, after healing every fault, that a leader emerges and all
// live members converge within a bounded number of events.
package sim
