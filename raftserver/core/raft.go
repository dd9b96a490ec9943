package core

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
)

// Raft is one member's Raft state machine. It is not safe for concurrent
// use: the server actor owns it and calls Step from one goroutine.
//
// A node may host thousands of members: keep the struct lean (its own ID
// is cfg.ID, its step function follows from its role, and its small fields
// sit together, without padding).
type Raft struct {
	cfg    Config
	logger *slog.Logger
	rng    *rand.Rand

	term      uint64
	vote      ServerID
	persisted HardState // last state handed out in PersistState

	role Role // a message is handled by the role's step function (see receive)
	// tickerOn: the leader's tick timer runs (see Leader state below).
	tickerOn bool
	// membersUnreported forces a MembersChanged report (after Started).
	membersUnreported bool
	// The election timer (see Elections below).
	timerArmed bool
	rearmTimer bool
	rearmShort bool

	counters Counters
	lead     ServerID // known leader of this term (self when leader), zero if none
	// deadLead is a leader reported dead by LeaderDown in this term; a
	// delayed message from it must not make it look alive again.
	deadLead ServerID
	// suspected, gone and strangers are nil until their first entry:
	// most members never see one, and a node may host thousands.
	suspected map[string]bool // nodes the failure detector suspects
	// gone are peers whose process PeerDown reported gone and that have
	// not been heard from since.
	gone map[ServerID]bool
	// strangers are members heard from under another incarnation than the
	// one the configuration binds them to (Status.Strangers).
	strangers map[ServerID]uint64

	log     raftLog
	commit  uint64
	applied uint64 // highest index handed out in an Apply

	// snapshot is the member's latest durable snapshot (SnapshotTaken,
	// RestoreSnapshot or Config.Snapshot); compacted is the highest index
	// the server was told it may drop through (or had dropped at start).
	// Invariant: snapshot.Index <= applied <= commit (except under the
	// ApplyUncommitted sabotage).
	snapshot  Snapshot
	compacted uint64
	// recoverTo, recoverTerm: see Config.RecoverTo; 0 once recovered.
	recoverTo, recoverTerm uint64

	members  membershipLog
	versions versionLog

	// Follower state, valid for the current term.
	matchedTo uint64 // highest index known to match the leader's log
	ackedTo   uint64 // LastIndex of the last successful AppendReply sent
	deferred  *AppendEntries
	// deferredSnap is the last received snapshot, parked until no write is
	// in flight (an install replaces the log, like an overwrite).
	deferredSnap *InstallSnapshot

	// Elections.
	votes map[ServerID]bool
	// ownVotes are the answers to this member's candidacy in the current
	// term, kept after its timer gave the round up (see stepPreVote).
	ownVotes         map[ServerID]bool
	electionAttempts int

	// Leader state.
	ldr        leaderState
	reportRole RoleChanged // last RoleChanged handed out
	// reportedMembers is the membershipLog.gen last reported by
	// MembersChanged (see also membersUnreported).
	reportedMembers uint64

	actions []Action
	err     error
}

// New restores a member from its durable state: the HardState last made
// durable by PersistState, the latest durable snapshot (cfg.Snapshot, zero
// if none; the server has restored the machine from it) and the log as its
// storage holds it now (only durable entries, continuing the snapshot). It
// validates cfg (after filling defaults) and returns errors wrapping
// ErrInvalidConfig, ErrInvalidState or ErrStorage.
//
// The member starts as a follower that knows no leader, with its commit and
// applied indexes at the snapshot's. Step(Started{}) must be the first
// call; it arms the election timer.
func New(cfg Config, state HardState, log LogReader) (*Raft, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		return nil, fmt.Errorf("%w: nil LogReader", ErrInvalidState)
	}
	snap := cfg.Snapshot.Clone()
	if state.Term > MaxTerm || snap.Index > MaxIndex || log.LastIndex() > MaxIndex {
		return nil, fmt.Errorf("%w: %w: term %d, snapshot index %d, last log index %d (bounds %d, %d)",
			ErrInvalidState, ErrOutOfRange, state.Term, snap.Index, log.LastIndex(), uint64(MaxTerm), uint64(MaxIndex))
	}
	if snap.Term > state.Term {
		return nil, fmt.Errorf("%w: snapshot term %d is above the persisted term %d", ErrInvalidState, snap.Term, state.Term)
	}
	rl, err := newRaftLog(log, snap)
	if err != nil {
		return nil, err
	}
	if rl.lastTerm() > state.Term {
		return nil, fmt.Errorf("%w: last log term %d is above the persisted term %d", ErrInvalidState, rl.lastTerm(), state.Term)
	}
	members, versions, err := loadLogMeta(log, snap, cfg.InitialMembers, cfg.MachineVersion)
	if err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r := &Raft{
		cfg:       cfg,
		logger:    logger.With("member", cfg.ID.String()),
		rng:       rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		term:      state.Term,
		vote:      state.VotedFor,
		persisted: state,
		role:      RoleFollower,
		log:       rl,
		commit:    snap.Index,
		applied:   snap.Index,
		matchedTo: snap.Index,
		snapshot:  snap,
		compacted: log.FirstIndex() - 1,
		members:   members,
		versions:  versions,
	}
	if cfg.RecoverTo > snap.Index {
		r.recoverTo, r.recoverTerm = cfg.RecoverTo, cfg.RecoverTerm
		r.logger.Warn("recovering lost log entries: no campaigns until they are back",
			"recover_to", cfg.RecoverTo, "recover_term", cfg.RecoverTerm)
	}
	return r, nil
}

// Step feeds one event to the member and returns what the server must do,
// in order (see Action for the ordering rules). The returned slice is
// reused by the next Step.
//
// A non-nil error wraps ErrStorage: the LogReader failed, the returned
// actions are nil, and the Raft is broken for good (every later Step
// returns the same error). The server must stop it and restart the member
// from durable state; nothing it was asked to do in this step was done.
func (r *Raft) Step(ev Event) ([]Action, error) {
	if _, ok := ev.(Stopping); ok {
		return r.stop(), nil
	}
	if r.err != nil {
		return nil, r.err
	}
	r.actions = r.actions[:0]
	switch ev := ev.(type) {
	case Started:
		r.reportRole = RoleChanged{}
		r.membersUnreported = true
		r.announce()
		if v := r.members.current.Voters; len(v) == 1 && v[0] == r.cfg.ID && r.mayCampaign() {
			// The only voter has nobody to wait for or to disrupt: a
			// single-member cluster serves again at once after a restart.
			r.becomePreVote()
		}
	case SnapshotTaken:
		r.handleSnapshotTaken(ev.Snapshot)
	case Receive:
		r.receive(ev.From, ev.Incarnation, ev.Msg)
	case Written:
		r.handleWritten(ev)
	case Command:
		r.handleCommands([]Command{ev})
	case Commands:
		r.handleCommands(ev.Batch)
	case Query:
		r.handleQuery(ev)
	case ElectionTimeout:
		r.handleElectionTimeout()
	case Campaign:
		r.handleCampaign()
	case LeaderDown:
		r.handleLeaderDown(ev.Leader)
	case NodeSuspected:
		r.handleNodeSuspected(ev.Node)
	case NodeUp:
		r.handleNodeUp(ev.Node)
	case PeerDown:
		r.handlePeerDown(ev.Peer)
	case Tick:
		if r.role == RoleLeader && r.tickerOn {
			r.leaderTick()
		}
	case AddMember:
		r.handleAddMember(ev)
	case RemoveMember:
		r.handleRemoveMember(ev)
	case TransferLeadership:
		r.handleTransfer(ev)
	default:
		r.logger.Warn("unknown event ignored", "event", fmt.Sprintf("%T", ev))
	}
	r.finish()
	if r.err != nil {
		r.actions = r.actions[:0]
		return nil, r.err
	}
	return r.actions, nil
}

// stop answers every token a stopping member holds (see Stopping). It
// works on a broken Raft too: the tokens are in memory, and their callers
// must not wait for answers that cannot come.
func (r *Raft) stop() []Action {
	r.actions = r.actions[:0]
	if r.role == RoleLeader {
		r.logger.Info("stepping down: stopping", "term", r.term)
		r.ldr.stepDown(r, false)
		r.role, r.lead = RoleFollower, ServerID{}
	}
	return r.actions
}

// fail records a storage failure; it sticks.
func (r *Raft) fail(err error) {
	if r.err == nil {
		if !errors.Is(err, ErrStorage) {
			err = fmt.Errorf("%w: %w", ErrStorage, err)
		}
		r.err = err
		r.logger.Error("raft broken by a log read failure", "err", err)
	}
}

func (r *Raft) emit(a Action) { r.actions = append(r.actions, a) }

func (r *Raft) send(to ServerID, m Message) { r.actions = append(r.actions, Send{To: to, Msg: m}) }

// finish runs after every event: it proposes the membership changes that
// waited, raises the machine version, advances apply (never past a version
// bump this member's code does not support), asks for compaction, follows
// the membership, arms or cancels timers, reports role changes and puts
// PersistState first.
func (r *Raft) finish() {
	if r.err != nil {
		return
	}
	r.proposeQueuedChanges()
	r.bindIncarnations()
	r.maybeBumpVersion()
	if r.err != nil {
		return
	}
	applyTo := r.commit
	if r.cfg.Sabotage.ApplyUncommitted {
		applyTo = max(applyTo, r.log.lastIndex())
	}
	if !r.cfg.Sabotage.ApplyUnsupportedVersion {
		applyTo = min(applyTo, r.versions.applyLimit(r.applied, r.cfg.MachineVersion))
	}
	// The Apply is emitted after followMembership: a leader that a
	// committed change removed sends its step-down notices before the
	// change's caller hears of the commit, so that a caller who then asks
	// a remaining member over the same link is not sent back to it.
	var apply *Apply
	if applyTo > r.applied {
		a := Apply{From: r.applied + 1, To: applyTo}
		if r.role == RoleLeader {
			a.Tokens = r.ldr.takeTokens(min(applyTo, r.commit))
		}
		r.applied = applyTo
		apply = &a
	}
	r.versions.applied(min(r.applied, r.commit))
	if r.recoverTo > 0 && (r.snapshot.Index >= r.recoverTo || min(r.commit, r.log.stable) >= r.recoverTo ||
		r.log.stableTerm > r.recoverTerm || r.log.stableTerm == r.recoverTerm && r.log.stable >= r.recoverTo) {
		// Either the log holds, durably, a leader's committed prefix up to
		// recoverTo, or its durable part is at least as up to date as the
		// lost log. Every entry of the log came from a leader's appends,
		// which an intact log would have taken too: it would have kept the
		// same entries where terms agree (the last entry's index and term
		// fix the whole prefix) and replaced the rest, ending up as this
		// log. Either way the member is where it would be had it lost
		// nothing, and may vote and stand as such.
		r.logger.Info("lost log entries recovered", "recover_to", r.recoverTo)
		r.recoverTo, r.recoverTerm = 0, 0
	}
	if s := r.snapshot.Index; s > r.compacted && r.log.stable >= s {
		// The entries the snapshot covers are durable in the log too (a
		// follower may have applied some before its log had them), so the
		// log's head may go.
		r.compacted = s
		r.emit(Compact{Through: s})
	}
	r.followMembership()
	if r.membersUnreported || r.members.gen != r.reportedMembers {
		r.membersUnreported, r.reportedMembers = false, r.members.gen
		r.forgetSuspicionsOfFormerNodes()
		r.emit(MembersChanged{Members: r.members.current})
	}
	if apply != nil {
		r.emit(*apply)
	}
	// After the Apply: what committed in this step is answered as
	// committed, not as lost with the leadership.
	r.stepDownIfUnreachable()
	r.syncElectionTimer()
	r.syncTicker()
	rc := RoleChanged{Role: r.role, Term: r.term, Leader: r.lead}
	if rc != r.reportRole {
		r.reportRole = rc
		r.emit(rc)
	}
	hs := HardState{Term: r.term, VotedFor: r.vote}
	if r.cfg.Sabotage.ForgetVote {
		hs.VotedFor = ServerID{}
	}
	if hs != r.persisted {
		r.persisted = hs
		r.actions = append(r.actions, nil)
		copy(r.actions[1:], r.actions)
		r.actions[0] = PersistState{State: hs}
	}
}

// mayStand reports whether this member may stand for election: as a voter
// of the config in effect, or as a voter of the previous one while the
// change that removed it (or made it a non-voter) is uncommitted. It may
// then still be needed to commit that change (Ongaro's thesis, 4.2.2); its
// own vote does not count, as tallies count the voters in effect only.
//
// A replica the configuration binds to another incarnation never stands:
// it lacks what the bound one acknowledged.
func (r *Raft) mayStand() bool {
	if r.isVoter() {
		return true
	}
	if r.staleIncarnation() {
		return false
	}
	prev, ok := r.members.previous(r.commit)
	if !ok || !prev.IsVoter(r.cfg.ID) {
		return false
	}
	inc := prev.Incarnation(r.cfg.ID)
	return inc == 0 || inc == r.cfg.Incarnation
}

// isVoter reports whether this member is a voter of the config in effect,
// as the incarnation that config binds (if any).
func (r *Raft) isVoter() bool {
	if r.members.voterFor != r.members.index()+1 {
		r.members.voter = r.members.current.IsVoter(r.cfg.ID) && !r.staleIncarnation()
		r.members.voterFor = r.members.index() + 1
	}
	return r.members.voter
}

// liveLeader reports whether this member follows a leader it has no reason
// to think dead. A leader counts itself.
func (r *Raft) liveLeader() bool {
	if r.lead.IsZero() {
		return false
	}
	if r.lead == r.cfg.ID {
		return true
	}
	return r.lead != r.deadLead && !r.suspected[r.lead.Node]
}

// syncElectionTimer arms the election timer exactly while something must
// happen later without any message arriving:
//   - a voter in pre_vote or candidate, or a voting follower without a
//     live leader, campaigns when it fires;
//   - a non-voter without a live leader re-announces NotLeader (it may be
//     a restarted ex-leader that followers still believe in), and so does
//     a member recovering lost entries, so that a leader finds it;
//   - a follower whose commit index is below its last index pings its
//     leader, which then re-sends what the follower lacks and the commit
//     index; a follower recovering lost entries tells its leader it
//     restarted, since the leader may believe it holds them. (In an idle cluster every follower's log equals the leader's,
//     whose noop aligned them, and is committed: no timer.)
//
// The last one is cancelled lazily (left to fire and be ignored), so a
// follower under load does not arm and cancel a timer per message.
func (r *Raft) syncElectionTimer() {
	live := r.liveLeader()
	campaign := r.mayCampaign() && (r.role == RolePreVote || r.role == RoleCandidate ||
		(r.role == RoleFollower && !live))
	recovering := r.recoverTo > 0
	announce := (!r.mayStand() || recovering) && r.role == RoleFollower && !live && len(r.members.current.peers(r.cfg.ID)) > 0
	watchdog := r.role == RoleFollower && live && (r.commit < r.log.lastIndex() || recovering)
	want := campaign || announce || watchdog
	lazy := r.role == RoleFollower && live
	switch {
	case want && (!r.timerArmed || r.rearmTimer || r.rearmShort):
		r.emit(SetElectionTimer{Ms: r.electionTimeoutMs()})
		r.timerArmed = true
	case !want && r.timerArmed && !lazy:
		r.emit(CancelElectionTimer{})
		r.timerArmed = false
	}
	r.rearmTimer, r.rearmShort = false, false
}

// announce tells every peer that this member leads nothing in its term: a
// follower that still follows it (it may have led before a restart, or
// stepped down) forgets it; a leader learns the member restarted (and,
// while it recovers, that it lost log entries).
func (r *Raft) announce() {
	for _, id := range r.members.current.peers(r.cfg.ID) {
		r.send(id, &NotLeader{Term: r.term, Lost: r.recoverTo > 0})
	}
}

// electionTimeoutMs is d = base*2^attempts (capped) plus jitter in [0, d).
// The jitter grows with the backoff: rounds fail again and again when
// round trips are slow (a loaded machine, many clusters electing at once),
// and candidates whose timers fire within a round trip of each other split
// the vote, so the spread must widen as the rounds get longer.
func (r *Raft) electionTimeoutMs() int64 {
	base := r.cfg.ElectionTimeoutMs
	shift := min(r.electionAttempts, r.cfg.MaxElectionBackoff)
	if r.rearmShort {
		base, shift = r.cfg.LeaderLostTimeoutMs, 0
	}
	d := base << shift
	return d + r.rng.Int64N(d)
}

// syncTicker asks for ticks exactly while a leader has work in flight.
func (r *Raft) syncTicker() {
	want := r.role == RoleLeader && r.hasWork()
	switch {
	case want && !r.tickerOn:
		r.tickerOn = true
		r.ldr.startWindow()
		r.emit(StartTicker{Ms: r.cfg.TickMs})
	case !want && r.tickerOn:
		r.tickerOn = false
		r.emit(StopTicker{})
	}
}

// Entries returns the entries in [lo, hi), at most maxBytes of them but at
// least one when lo < hi, reading from memory or the LogReader. The server
// uses it to read the entries an Apply names. Errors wrap ErrCompacted (lo
// is at or below the snapshot and the log no longer holds it),
// ErrUnavailable (hi is beyond the log) or ErrStorage (the reader failed).
func (r *Raft) Entries(lo, hi uint64, maxBytes int) ([]Entry, error) {
	if hi > r.log.lastIndex()+1 {
		return nil, fmt.Errorf("%w: entries up to %d requested, last is %d", ErrUnavailable, hi-1, r.log.lastIndex())
	}
	if lo < hi && lo < r.log.reader.FirstIndex() {
		return nil, fmt.Errorf("%w: entries from %d requested, the log starts at %d", ErrCompacted, lo, r.log.reader.FirstIndex())
	}
	ents, err := r.log.slice(lo, hi, maxBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: entries [%d, %d): %w", ErrStorage, lo, hi, err)
	}
	return ents, nil
}
