package raftserver

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rago-raft/rago/actor"
)

// fxCalls counts Call effects by id, across every node of a test.
var fxCalls sync.Map // string -> *int64 under fxMu
var fxMu sync.Mutex

func fxCallCount(id string) int64 {
	fxMu.Lock()
	defer fxMu.Unlock()
	if v, ok := fxCalls.Load(id); ok {
		return *v.(*int64)
	}
	return 0
}

// fxMachine exercises every effect. Its commands are strings:
//
//	send NAME NODE TEXT        Send TEXT to the process
//	call ID                    Call a function that counts ID
//	monitor NAME NODE          Monitor the process
//	monitornode NODE           MonitorNode
//	demonitor NAME NODE        Demonitor the process
//	demonitornode NODE         DemonitorNode
//	timer NAME MS              SetTimer (0 cancels); re-armed on StateEnter
//	store DATA                 reply with the entry's index
//	readlog IDX NAME NODE      ReadLog([IDX]) and Send the command there
//	badset K V                 change the state, then panic
//	incr                       count, reply with the count
//	slowincr MS                sleep, then count
//
// Observations and role changes are recorded in events; query "events"
// returns them, "count" the counter, "get K" a key.
type fxMachine struct {
	events []string
	timers map[string]time.Duration
	kv     map[string]string
	count  int
	ticks  int
}

func newFX([]byte) (Machine, error) {
	return &fxMachine{timers: map[string]time.Duration{}, kv: map[string]string{}}, nil
}

func (m *fxMachine) Apply(ctx *ApplyContext, cmd []byte) []byte {
	f := strings.Fields(string(cmd))
	switch f[0] {
	case "send":
		ctx.Send(actor.Ref{Name: f[1], Node: f[2]}, f[3])
	case "call":
		id := f[1]
		ctx.Call(func() {
			fxMu.Lock()
			defer fxMu.Unlock()
			v, _ := fxCalls.LoadOrStore(id, new(int64))
			*v.(*int64)++
		})
	case "monitor":
		ctx.Monitor(actor.Ref{Name: f[1], Node: f[2]})
	case "monitornode":
		ctx.MonitorNode(f[1])
	case "demonitor":
		ctx.Demonitor(actor.Ref{Name: f[1], Node: f[2]})
	case "demonitornode":
		ctx.DemonitorNode(f[1])
	case "timer":
		ms, _ := strconv.Atoi(f[2])
		d := time.Duration(ms) * time.Millisecond
		if d > 0 {
			m.timers[f[1]] = d
		} else {
			delete(m.timers, f[1])
		}
		ctx.SetTimer(f[1], d)
	case "store":
		return []byte(fmt.Sprint(ctx.Index))
	case "readlog":
		idx, _ := strconv.ParseUint(f[1], 10, 64)
		to := actor.Ref{Name: f[2], Node: f[3]}
		ctx.ReadLog([]uint64{idx}, func(cmds [][]byte, out *Effects) {
			out.Send(to, string(cmds[0]))
		})
	case "badset":
		m.kv[f[1]] = f[2]
		panic("badset is poison")
	case "incr":
		m.count++
		return []byte(fmt.Sprint(m.count))
	case "slowincr":
		ms, _ := strconv.Atoi(f[1])
		time.Sleep(time.Duration(ms) * time.Millisecond)
		m.count++
		return []byte(fmt.Sprint(m.count))
	}
	return nil
}

func (m *fxMachine) Observe(_ *ApplyContext, o Observation) {
	switch o := o.(type) {
	case ProcessDown:
		m.events = append(m.events, "down:"+o.Ref.Name+":"+strings.SplitN(o.Reason, ":", 2)[0])
	case NodeDown:
		m.events = append(m.events, "nodedown")
	case NodeUp:
		m.events = append(m.events, "nodeup")
	case TimerFired:
		delete(m.timers, o.Name)
		m.events = append(m.events, "fired:"+o.Name)
	}
}

func (m *fxMachine) StateEnter(role Role, out *Effects) {
	if role == RoleLeader {
		for name, d := range m.timers {
			out.SetTimer(name, d)
		}
	}
}

func (m *fxMachine) Tick(time.Time, *Effects) { m.ticks++ }

func (m *fxMachine) Overview() map[string]string {
	return map[string]string{"count": fmt.Sprint(m.count), "ticks": fmt.Sprint(m.ticks)}
}

func (m *fxMachine) Query(q []byte) ([]byte, error) {
	f := strings.Fields(string(q))
	switch f[0] {
	case "events":
		return []byte(strings.Join(m.events, ",")), nil
	case "count":
		return []byte(fmt.Sprint(m.count)), nil
	case "get":
		return []byte(m.kv[f[1]]), nil
	}
	return nil, fmt.Errorf("unknown query %q", q)
}
