package core

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of testdata/*.txt interaction scripts")

// TestInteractionTraces runs the scripts in testdata/ (etcd-style): each
// block is a command, a "----" line and the expected full trace of actions
// it causes. Regenerate after an intended change with
//
//	go test ./raftserver/core -run TestInteractionTraces -rewrite
//
// and read the diff: it is the protocol change.
func TestInteractionTraces(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			raw, err := os.ReadFile(path)
			require.NoError(t, err)
			blocks := strings.Split(strings.TrimSpace(string(raw)), "\n\n")
			it := &interaction{t: t}
			var out strings.Builder
			for i, b := range blocks {
				cmd, want, _ := strings.Cut(b, "\n----")
				want = strings.TrimRight(strings.TrimPrefix(want, "\n"), "\n")
				got := strings.TrimRight(it.run(strings.TrimSpace(cmd)), "\n")
				if *rewrite {
					if i > 0 {
						out.WriteString("\n\n")
					}
					out.WriteString(strings.TrimSpace(cmd) + "\n----\n" + got)
					continue
				}
				require.Equal(t, want, got, "%s: block %d: %s", path, i+1, cmd)
			}
			if *rewrite {
				require.NoError(t, os.WriteFile(path, []byte(out.String()+"\n"), 0o644))
			}
		})
	}
}

// interaction interprets one script against a testCluster, printing every
// action every member takes.
type interaction struct {
	t   *testing.T
	c   *testCluster
	out *strings.Builder
}

func (it *interaction) run(cmd string) string {
	var b strings.Builder
	it.out = &b
	for _, line := range strings.Split(cmd, "\n") {
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		f := strings.Fields(line)
		switch f[0] {
		case "cluster":
			// cluster N [versions=v1,v2,...]
			n, err := strconv.Atoi(f[1])
			require.NoError(it.t, err)
			versions := make([]uint64, n)
			if len(f) > 2 {
				list, ok := strings.CutPrefix(f[2], "versions=")
				require.True(it.t, ok, "cluster N [versions=v1,v2,...]")
				for i, v := range strings.Split(list, ",") {
					versions[i] = it.uint(v)
				}
			}
			it.c = newTestCluster(it.t, 0)
			for i := 1; i <= n; i++ {
				it.c.members.Voters = append(it.c.members.Voters, id(i))
			}
			for i := 1; i <= n; i++ {
				it.addMember(id(i), versions[i-1])
			}
		case "join":
			// join sN: a new member outside any configuration starts, to
			// be added later.
			members := it.c.members
			it.c.members = Membership{}
			it.addMember(it.sid(f[1]), 0)
			it.c.members = members
		case "restart":
			// restart sN [vV]: the member restarts from its durable state,
			// with code that supports version V if given.
			it.restart(it.sid(f[1]), f[2:])
		case "snapshot":
			// snapshot sN: the member made a snapshot at its applied index
			// durable.
			it.snapshot(it.sid(f[1]))
		case "timeout":
			it.step(it.sid(f[1]), ElectionTimeout{})
		case "campaign":
			it.step(it.sid(f[1]), Campaign{})
		case "tick":
			it.step(it.sid(f[1]), Tick{})
		case "propose":
			it.step(it.sid(f[1]), Command{Data: []byte(f[2]), Token: f[2]})
		case "query":
			it.step(it.sid(f[1]), Query{Kind: QueryConsistent, Token: f[2]})
		case "transfer":
			it.step(it.sid(f[1]), TransferLeadership{To: it.sid(f[2]), Token: "transfer"})
		case "add-member":
			// add-member sN sM [voter]: sN is asked to add sM.
			it.step(it.sid(f[1]), AddMember{Member: it.sid(f[2]), Voter: len(f) > 3 && f[3] == "voter", Token: "add-" + f[2]})
		case "remove-member":
			// remove-member sN sM: sN is asked to remove sM.
			it.step(it.sid(f[1]), RemoveMember{Member: it.sid(f[2]), Token: "remove-" + f[2]})
		case "suspect":
			// suspect sN sM: the failure detector of sN's node suspects sM's node.
			it.step(it.sid(f[1]), NodeSuspected{Node: it.sid(f[2]).Node})
		case "stopping":
			it.step(it.sid(f[1]), Stopping{})
		case "leader-down":
			it.step(it.sid(f[1]), LeaderDown{Leader: it.sid(f[2])})
		case "deliver":
			// deliver [N]: the messages in flight, or the first N of them.
			n := -1
			if len(f) > 1 {
				n = int(it.uint(f[1]))
			}
			it.deliver(n)
		case "flush":
			for _, sid := range it.targets(f[1:]) {
				nd := it.c.node(sid)
				p := nd.pending
				nd.pending = nil
				for _, e := range p {
					it.step(sid, Written{Term: e.Term, To: e.Index})
				}
			}
		case "isolate":
			it.c.isolate(it.sid(f[1]))
			fmt.Fprintf(it.out, "%s isolated\n", f[1])
		case "heal":
			it.c.heal()
			fmt.Fprintf(it.out, "healed\n")
		case "status":
			for _, sid := range it.c.ids {
				st := it.c.node(sid).r.Status()
				fmt.Fprintf(it.out, "%s %s term=%d lead=%s commit=%d applied=%d last=%d stable=%d",
					sid.Name, st.Role, st.Term, st.Leader.Name, st.Commit, st.Applied, st.LastIndex, st.StableIndex)
				if st.SnapshotIndex > 0 || st.FirstIndex > 1 {
					fmt.Fprintf(it.out, " first=%d snapshot=%d@%d", st.FirstIndex, st.SnapshotIndex, st.SnapshotTerm)
				}
				if st.MachineVersion > 0 || st.SupportedVersion > 0 {
					fmt.Fprintf(it.out, " version=%d supported=%d", st.MachineVersion, st.SupportedVersion)
				}
				fmt.Fprintln(it.out)
			}
		default:
			it.t.Fatalf("unknown command %q", line)
		}
	}
	return b.String()
}

func (it *interaction) addMember(sid ServerID, version uint64) {
	cfg := Config{ID: sid, InitialMembers: it.c.members, ElectionTimeoutMs: 100, TickMs: 10, CheckQuorumMs: 30,
		MaxInFlight: 8, SnapshotRetryMs: 50, MachineVersion: version, Seed: uint64(len(it.c.ids) + 1)}
	r, err := New(cfg, HardState{}, newMemLog())
	require.NoError(it.t, err)
	it.c.nodes[sid] = &testNode{id: sid, r: r, cfg: cfg, log: r.log.reader.(*memLog)}
	it.c.ids = append(it.c.ids, sid)
	it.step(sid, Started{})
}

// restart replaces sid by a fresh Raft over its durable state; args may
// name the version its new code supports (vN).
func (it *interaction) restart(sid ServerID, args []string) {
	old := it.c.node(sid)
	cfg := old.cfg
	cfg.Snapshot = old.snap
	for _, a := range args {
		v, ok := strings.CutPrefix(a, "v")
		require.True(it.t, ok, "restart sN [vV]")
		cfg.MachineVersion = it.uint(v)
	}
	log := old.log.durable(old.r.log.stable)
	r, err := New(cfg, old.hard, log)
	require.NoError(it.t, err)
	it.c.nodes[sid] = &testNode{id: sid, r: r, cfg: cfg, log: log, hard: old.hard, snap: cfg.Snapshot, applied: cfg.Snapshot.Index}
	fmt.Fprintf(it.out, "%s restarted, supports version %d\n", sid.Name, cfg.MachineVersion)
	it.step(sid, Started{})
}

// snapshot has sid take a snapshot at its applied index. The version is the
// one its applied entries reached; the members are the initial ones (the
// scripts change no membership).
func (it *interaction) snapshot(sid ServerID) {
	nd := it.c.node(sid)
	version := nd.snap.MachineVersion
	for _, e := range nd.log.ents {
		if e.Index <= nd.applied && e.Type == EntryMachineVersion {
			v, err := DecodeMachineVersion(e.Data)
			require.NoError(it.t, err)
			version = v
		}
	}
	t, err := nd.r.log.term(nd.applied)
	require.NoError(it.t, err)
	nd.snap = Snapshot{Index: nd.applied, Term: t, MachineVersion: version}
	it.step(sid, SnapshotTaken{Snapshot: nd.snap})
}

func (it *interaction) uint(s string) uint64 {
	v, err := strconv.ParseUint(s, 10, 64)
	require.NoError(it.t, err)
	return v
}

func (it *interaction) sid(name string) ServerID {
	n, err := strconv.Atoi(strings.TrimPrefix(name, "s"))
	require.NoError(it.t, err, "member names are s1, s2, ...")
	return id(n)
}

func (it *interaction) targets(args []string) []ServerID {
	if len(args) == 0 || args[0] == "all" {
		return it.c.ids
	}
	var out []ServerID
	for _, a := range args {
		out = append(out, it.sid(a))
	}
	return out
}

func (it *interaction) step(sid ServerID, ev Event) {
	acts := it.c.step(sid, ev)
	fmt.Fprintf(it.out, "%s <- %s\n", sid.Name, describeEvent(ev))
	for _, a := range acts {
		fmt.Fprintf(it.out, "  %s\n", describeAction(a))
	}
}

func (it *interaction) deliver(n int) {
	for ; len(it.c.inbox) > 0 && n != 0; n-- {
		e := it.c.inbox[0]
		it.c.inbox = it.c.inbox[1:]
		if it.c.cut[[2]ServerID{e.from, e.to}] {
			fmt.Fprintf(it.out, "%s -x %s %s (lost)\n", e.from.Name, e.to.Name, describeMsg(e.msg))
			continue
		}
		it.step(e.to, Receive{From: e.from, Msg: e.msg})
	}
}

func describeEvent(ev Event) string {
	switch ev := ev.(type) {
	case Receive:
		return ev.From.Name + " " + describeMsg(ev.Msg)
	case Written:
		return fmt.Sprintf("Written %d@%d", ev.To, ev.Term)
	case Command:
		return fmt.Sprintf("Command %q", ev.Data)
	case Query:
		return fmt.Sprintf("Query %v", ev.Token)
	case LeaderDown:
		return "LeaderDown " + ev.Leader.Name
	case SnapshotTaken:
		return fmt.Sprintf("SnapshotTaken %d@%d version=%d", ev.Snapshot.Index, ev.Snapshot.Term, ev.Snapshot.MachineVersion)
	case TransferLeadership:
		return "TransferLeadership " + ev.To.Name
	case AddMember:
		return fmt.Sprintf("AddMember %s voter=%v", ev.Member.Name, ev.Voter)
	case RemoveMember:
		return "RemoveMember " + ev.Member.Name
	case NodeSuspected:
		return "NodeSuspected " + ev.Node
	default:
		return strings.TrimPrefix(fmt.Sprintf("%T", ev), "core.")
	}
}

// versionNote shows a machine version in a message when it is not 0, so
// that traces without versions read as before.
func versionNote(v uint64) string {
	if v == 0 {
		return ""
	}
	return fmt.Sprintf(" v%d", v)
}

func describeMsg(m Message) string {
	switch m := m.(type) {
	case *AppendEntries:
		var es []string
		for _, e := range m.Entries {
			es = append(es, fmt.Sprintf("%d@%d", e.Index, e.Term))
		}
		return fmt.Sprintf("AppendEntries t%d prev=%d@%d commit=%d [%s]", m.Term, m.PrevIndex, m.PrevTerm, m.Commit, strings.Join(es, " "))
	case *AppendReply:
		if m.Success {
			return fmt.Sprintf("AppendReply t%d ok last=%d@%d commit=%d%s", m.Term, m.LastIndex, m.LastTerm, m.Commit, versionNote(m.MachineVersion))
		}
		return fmt.Sprintf("AppendReply t%d reject prev=%d hint=%d@%d commit=%d%s", m.Term, m.RejectedPrev, m.LastIndex, m.LastTerm, m.Commit, versionNote(m.MachineVersion))
	case *PreVoteRequest:
		return fmt.Sprintf("PreVoteRequest t%d last=%d@%d%s", m.Term, m.LastIndex, m.LastTerm, versionNote(m.MachineVersion))
	case *PreVoteReply:
		return fmt.Sprintf("PreVoteReply t%d granted=%v", m.Term, m.Granted)
	case *VoteRequest:
		return fmt.Sprintf("VoteRequest t%d last=%d@%d transfer=%v%s", m.Term, m.LastIndex, m.LastTerm, m.Transfer, versionNote(m.MachineVersion))
	case *VoteReply:
		return fmt.Sprintf("VoteReply t%d granted=%v", m.Term, m.Granted)
	case *TimeoutNow:
		return fmt.Sprintf("TimeoutNow t%d", m.Term)
	case *Heartbeat:
		return fmt.Sprintf("Heartbeat t%d seq=%d commit=%d", m.Term, m.Seq, m.Commit)
	case *HeartbeatReply:
		return fmt.Sprintf("HeartbeatReply t%d seq=%d commit=%d%s", m.Term, m.Seq, m.Commit, versionNote(m.MachineVersion))
	case *InstallSnapshot:
		return fmt.Sprintf("InstallSnapshot t%d snapshot=%d@%d version=%d", m.Term, m.Snapshot.Index, m.Snapshot.Term, m.Snapshot.MachineVersion)
	case *NotLeader:
		return fmt.Sprintf("NotLeader t%d", m.Term)
	}
	return fmt.Sprintf("%T", m)
}

func describeAction(a Action) string {
	switch a := a.(type) {
	case PersistState:
		return fmt.Sprintf("PersistState term=%d vote=%s", a.State.Term, a.State.VotedFor.Name)
	case Append:
		first, last := a.Entries[0], a.Entries[len(a.Entries)-1]
		var bumps []string
		for _, e := range a.Entries {
			if e.Type == EntryMachineVersion {
				v, _ := DecodeMachineVersion(e.Data)
				bumps = append(bumps, fmt.Sprintf(" (%d: version %d)", e.Index, v))
			}
		}
		return fmt.Sprintf("Append %d..%d@%d%s", first.Index, last.Index, last.Term, strings.Join(bumps, ""))
	case Compact:
		return fmt.Sprintf("Compact through=%d", a.Through)
	case SendSnapshot:
		return fmt.Sprintf("SendSnapshot -> %s %s", a.To.Name, describeMsg(a.Msg))
	case RestoreSnapshot:
		return fmt.Sprintf("RestoreSnapshot %d@%d version=%d", a.Snapshot.Index, a.Snapshot.Term, a.Snapshot.MachineVersion)
	case Send:
		return "-> " + a.To.Name + " " + describeMsg(a.Msg)
	case Apply:
		var toks []string
		for _, t := range a.Tokens {
			toks = append(toks, fmt.Sprintf("%v@%d", t.Token, t.Index))
		}
		sort.Strings(toks)
		return fmt.Sprintf("Apply %d..%d tokens=[%s]", a.From, a.To, strings.Join(toks, " "))
	case Reply:
		if a.Err == nil {
			return fmt.Sprintf("Reply %v ok", a.Token)
		}
		return fmt.Sprintf("Reply %v err=%q leader=%s", a.Token, a.Err, a.Leader.Name)
	case RunQuery:
		return fmt.Sprintf("RunQuery %v at=%d", a.Token, a.ReadIndex)
	case SetElectionTimer:
		return fmt.Sprintf("SetElectionTimer %dms", a.Ms)
	case RoleChanged:
		return fmt.Sprintf("RoleChanged %s term=%d leader=%s", a.Role, a.Term, a.Leader.Name)
	case StartTicker:
		return fmt.Sprintf("StartTicker %dms", a.Ms)
	case MembersChanged:
		names := func(ids []ServerID) string {
			var out []string
			for _, id := range ids {
				out = append(out, id.Name)
			}
			return strings.Join(out, ",")
		}
		return fmt.Sprintf("MembersChanged voters=%s nonvoters=%s", names(a.Members.Voters), names(a.Members.NonVoters))
	default:
		return strings.TrimPrefix(fmt.Sprintf("%T", a), "core.")
	}
}
