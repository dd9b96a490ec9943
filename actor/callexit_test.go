package actor

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A process that took a call and exits before anyone answered it ends
// that call with ErrProcessExited, locally and across nodes.

// onCall spawns a process on n that signals taken for each call it takes
// and then runs handle; other messages go to other (if set). Terminating
// runs last (if set).
type callee struct {
	handle func(ctx *Context, msg Message)
	other  func(ctx *Context, msg Message)
	last   func(ctx *Context)
}

func spawnCallee(t *testing.T, n *Node, c callee, taken chan<- struct{}) Ref {
	t.Helper()
	ref, err := n.Spawn(ProcessFunc(func(ctx *Context, msg Message) {
		switch msg.(type) {
		case Started:
			return
		case Terminating:
			if c.last != nil {
				c.last(ctx)
			}
			return
		}
		if _, ok := ctx.ReplyTo(); ok {
			taken <- struct{}{}
			c.handle(ctx, msg)
		} else if c.other != nil {
			c.other(ctx, msg)
		}
	}))
	require.NoError(t, err)
	return ref
}

// eachSide runs f with the callee's node and the caller's node: the same
// node, then two nodes.
func eachSide(t *testing.T, f func(t *testing.T, host, caller *Node)) {
	for _, remote := range []bool{false, true} {
		name := map[bool]string{false: "local", true: "remote"}[remote]
		t.Run(name, func(t *testing.T) {
			host := startNode(t)
			caller := host
			if remote {
				caller = startNode(t)
			}
			f(t, host, caller)
		})
	}
}

func TestTakenCallEndsWhenItsProcessExits(t *testing.T) {
	var kept sync.Map // callee ref -> ReplyTo it keeps
	cases := []struct {
		name string
		c    callee
		// then runs once the call was taken (host is the callee's node).
		then func(t *testing.T, host *Node, ref Ref)
		// reply: the caller gets this reply instead of an error.
		reply Message
		// reason is the exit reason the local error names.
		reason string
	}{
		{
			name:   "stops in the call",
			c:      callee{handle: func(ctx *Context, _ Message) { ctx.Stop() }},
			reason: "normal",
		},
		{
			name:   "crashes in the call",
			c:      callee{handle: func(*Context, Message) { panic("no answer for you") }},
			reason: "crash: no answer for you",
		},
		{
			name: "keeps the ReplyTo and stops on a later message",
			c: callee{
				handle: func(ctx *Context, _ Message) {
					rt, _ := ctx.ReplyTo()
					kept.Store(ctx.Self(), rt)
				},
				other: func(ctx *Context, msg Message) {
					if msg == "go away" {
						ctx.Stop()
					}
				},
			},
			then: func(t *testing.T, host *Node, ref Ref) {
				require.NoError(t, host.Send(ref, "go away"))
			},
			reason: "normal",
		},
		{
			name: "keeps the ReplyTo and is killed",
			c: callee{handle: func(ctx *Context, _ Message) {
				rt, _ := ctx.ReplyTo()
				kept.Store(ctx.Self(), rt)
			}},
			then: func(t *testing.T, host *Node, ref Ref) {
				require.NoError(t, host.Exit(ref, Reason{Kind: ReasonKilled, Detail: "by the test"}))
			},
			reason: "killed: by the test",
		},
		{
			name: "keeps the ReplyTo and crashes on a later message",
			c: callee{
				handle: func(ctx *Context, _ Message) { _, _ = ctx.ReplyTo() },
				other:  func(*Context, Message) { panic("later") },
			},
			then: func(t *testing.T, host *Node, ref Ref) {
				require.NoError(t, host.Send(ref, "boom"))
			},
			reason: "crash: later",
		},
		{
			name: "replies and then stops",
			c: callee{handle: func(ctx *Context, msg Message) {
				assert.NoError(t, ctx.Reply(msg))
				ctx.Stop()
			}},
			reply: "question",
		},
		{
			name: "replies through the ReplyTo and then stops",
			c: callee{handle: func(ctx *Context, msg Message) {
				rt, _ := ctx.ReplyTo()
				assert.NoError(t, ctx.Node().Reply(rt, msg))
				ctx.Stop()
			}},
			reply: "question",
		},
		{
			name: "keeps the ReplyTo and answers it in Terminating",
			c: callee{
				handle: func(ctx *Context, _ Message) {
					rt, _ := ctx.ReplyTo()
					kept.Store(ctx.Self(), rt)
				},
				other: func(ctx *Context, _ Message) { ctx.Stop() },
				last: func(ctx *Context) {
					if rt, ok := kept.Load(ctx.Self()); ok {
						assert.NoError(t, ctx.Node().Reply(rt.(ReplyTo), "goodbye"))
					}
				},
			},
			then: func(t *testing.T, host *Node, ref Ref) {
				require.NoError(t, host.Send(ref, "stop now"))
			},
			reply: "goodbye",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eachSide(t, func(t *testing.T, host, caller *Node) {
				taken := make(chan struct{}, 1)
				ref := spawnCallee(t, host, tc.c, taken)
				errs := make(chan error, 1)
				replies := make(chan Message, 1)
				go func() {
					r, err := caller.Call(ref, "question", callDeadline)
					replies <- r
					errs <- err
				}()
				waitSignal(t, taken, "the call is taken")
				if tc.then != nil {
					tc.then(t, host, ref)
				}
				err := collect(t, errs, 1)[0]
				r := <-replies
				if tc.reply != nil {
					require.NoError(t, err)
					require.Equal(t, tc.reply, r)
				} else {
					require.ErrorIs(t, err, ErrProcessExited)
					require.False(t, errors.Is(err, ErrNoProcess), "the request was taken: %v", err)
					if host == caller {
						require.Contains(t, err.Error(), ref.String())
						require.Contains(t, err.Error(), tc.reason)
					}
				}
				require.NoError(t, host.Wait(t.Context(), ref))
				requireNoKeptCalls(t, host)
				// Calls after the exit fail as not processed.
				_, err = caller.Call(ref, "again", callDeadline)
				require.ErrorIs(t, err, ErrNoProcess)
			})
		})
	}
}

// waitSignal waits for a signal on ch. (The callees here signal that they
// took a call before anything else, so the call cannot have ended first
// without it.)
func waitSignal(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitFor):
		t.Fatal(what + ": no signal")
	}
}

// requireNoKeptCalls checks that n's index of kept calls is empty.
func requireNoKeptCalls(t *testing.T, n *Node) {
	t.Helper()
	for i := range n.kept.shards {
		s := &n.kept.shards[i]
		s.mu.Lock()
		size := len(s.m)
		s.mu.Unlock()
		require.Zero(t, size, "calls left in the kept index")
	}
}

func TestHandedOnReplyToRacesTheExitCleanly(t *testing.T) {
	// A process hands the ReplyTo to a helper and exits. If it exits
	// first, the caller gets ErrProcessExited and the helper's late reply
	// is dropped; if the helper replies first, the caller gets the reply.
	eachSide(t, func(t *testing.T, host, caller *Node) {
		for _, helperFirst := range []bool{false, true} {
			handed := make(chan ReplyTo, 1)
			taken := make(chan struct{}, 1)
			ref := spawnCallee(t, host, callee{
				handle: func(ctx *Context, _ Message) {
					rt, _ := ctx.ReplyTo()
					handed <- rt
				},
				other: func(ctx *Context, _ Message) { ctx.Stop() },
			}, taken)
			errs := make(chan error, 1)
			replies := make(chan Message, 1)
			go func() {
				r, err := caller.Call(ref, "q", callDeadline)
				replies <- r
				errs <- err
			}()
			waitSignal(t, taken, "the call is taken")
			rt := <-handed
			if helperFirst {
				require.NoError(t, host.Reply(rt, "from the helper"))
				require.NoError(t, collect(t, errs, 1)[0])
				require.Equal(t, "from the helper", <-replies)
				require.NoError(t, host.Send(ref, "stop"))
				require.NoError(t, host.Wait(t.Context(), ref))
			} else {
				require.NoError(t, host.Send(ref, "stop"))
				require.NoError(t, host.Wait(t.Context(), ref))
				require.ErrorIs(t, collect(t, errs, 1)[0], ErrProcessExited)
				require.NoError(t, host.Reply(rt, "too late"))
			}
			requireNoKeptCalls(t, host)
		}
	})
}

func TestReplyingTwiceAnswersOnce(t *testing.T) {
	eachSide(t, func(t *testing.T, host, caller *Node) {
		second := make(chan error, 1)
		ref, err := host.Spawn(ProcessFunc(func(ctx *Context, msg Message) {
			if _, ok := ctx.ReplyTo(); ok {
				_ = ctx.Reply("first")
				second <- ctx.Reply("second")
			}
		}))
		require.NoError(t, err)
		r, err := caller.Call(ref, "q", callDeadline)
		require.NoError(t, err)
		require.Equal(t, "first", r)
		require.NoError(t, <-second)
		requireNoKeptCalls(t, host)
		require.Zero(t, takenCalls(host, ref))
	})
}

// takenCalls counts the calls the live process ref took and nobody
// answered.
func takenCalls(n *Node, ref Ref) int {
	return countCalls(n, ref, func(p *proc) *callRequest { return p.taken })
}

func TestAnsweredCallsAreNotKept(t *testing.T) {
	// A long-lived process keeps no trace of the calls it answered,
	// however it answered them.
	eachSide(t, func(t *testing.T, host, caller *Node) {
		var held []ReplyTo
		answered := make(chan struct{}, 1)
		ref, err := host.Spawn(ProcessFunc(func(ctx *Context, msg Message) {
			switch msg {
			case "at once":
				_ = ctx.Reply("done")
			case "read, then at once":
				_, _ = ctx.ReplyTo()
				_ = ctx.Reply("done")
			case "hold":
				rt, _ := ctx.ReplyTo()
				held = append(held, rt)
			case "answer held":
				for _, rt := range held {
					_ = ctx.Node().Reply(rt, "done")
				}
				held = nil
				answered <- struct{}{}
			case "hand on":
				rt, _ := ctx.ReplyTo()
				go func() { _ = host.Reply(rt, "done") }()
			}
		}))
		require.NoError(t, err)
		for _, how := range []string{"at once", "read, then at once", "hand on"} {
			r, err := caller.Call(ref, how, callDeadline)
			require.NoError(t, err, how)
			require.Equal(t, "done", r)
		}
		const n = 5
		errs := callAsync(caller, ref, "hold", n)
		eventually(t, func() bool { return takenCalls(host, ref) == n }, "the process holds %d calls", n)
		require.NoError(t, host.Send(ref, "answer held"))
		<-answered
		for _, err := range collect(t, errs, n) {
			require.NoError(t, err)
		}
		require.Zero(t, takenCalls(host, ref))
		requireNoKeptCalls(t, host)
	})
}

func TestALocalCallerThatStopsWaitingIsForgotten(t *testing.T) {
	// A caller on the same node that gives up lets the process forget the
	// call, taken or still queued; a process that never answers holds
	// nothing for it.
	n := startNode(t)
	taken := make(chan struct{}, 1)
	entered, release := make(chan struct{}), make(chan struct{})
	silent := spawnCallee(t, n, callee{
		handle: func(ctx *Context, _ Message) { _, _ = ctx.ReplyTo() }, // and never answer
		other: func(*Context, Message) {
			close(entered)
			<-release
		},
	}, taken)

	ctx, cancel := context.WithCancel(t.Context())
	errs := make(chan error, 1)
	go func() { _, err := n.CallContext(ctx, silent, "q"); errs <- err }()
	waitSignal(t, taken, "the call is taken")
	require.Equal(t, 1, takenCalls(n, silent))
	cancel()
	require.ErrorIs(t, collect(t, errs, 1)[0], ErrTimeout)
	require.Zero(t, takenCalls(n, silent))

	// Abandoned while queued: still processed once taken, not kept.
	require.NoError(t, n.Send(silent, "block"))
	<-entered
	ctx, cancel = context.WithCancel(t.Context())
	go func() { _, err := n.CallContext(ctx, silent, "q"); errs <- err }()
	waitQueued(t, n, silent, 1)
	cancel()
	require.ErrorIs(t, collect(t, errs, 1)[0], ErrTimeout)
	close(release)
	waitSignal(t, taken, "the abandoned call is processed")
	require.Zero(t, takenCalls(n, silent))
}

// stressOps are what a stress callee does with a call.
var stressOps = []string{"reply", "stop", "panic", "keep", "keep then stop", "hand on", "reply then stop"}

// stressCallee answers calls as the op in the request says.
func stressCallee(n *Node) Process {
	type keptCall struct {
		rt  ReplyTo
		req echo
	}
	var kept []keptCall
	return ProcessFunc(func(ctx *Context, msg Message) {
		switch m := msg.(type) {
		case echo:
			switch stressOps[m.N] {
			case "reply":
				_ = ctx.Reply(m)
			case "stop":
				ctx.Stop()
			case "panic":
				panic("stress")
			case "keep":
				rt, _ := ctx.ReplyTo()
				kept = append(kept, keptCall{rt, m})
				ctx.SendAfter(time.Duration(rand.IntN(500))*time.Microsecond, "flush")
			case "keep then stop":
				rt, _ := ctx.ReplyTo()
				kept = append(kept, keptCall{rt, m})
				ctx.SendAfter(time.Duration(rand.IntN(500))*time.Microsecond, "stop")
			case "hand on":
				// Another goroutine answers, racing with whatever ends
				// the process.
				rt, _ := ctx.ReplyTo()
				go func() { _ = n.Reply(rt, m) }()
			case "reply then stop":
				_ = ctx.Reply(m)
				ctx.Stop()
			}
		case string:
			switch m {
			case "flush":
				for _, k := range kept {
					_ = ctx.Node().Reply(k.rt, k.req)
				}
				kept = kept[:0]
			case "stop":
				ctx.Stop()
			}
		}
	})
}

func TestCallsToProcessesThatReplyExitOrCrashAllEnd(t *testing.T) {
	// Many callers, processes that reply, stop, crash, keep calls and hand
	// them on at random, a killer and respawns: every call ends with the
	// reply, ErrNoProcess or ErrProcessExited, never a timeout.
	eachSide(t, func(t *testing.T, host, caller *Node) {
		const names, callers, perCaller = 8, 16, 150
		stop := make(chan struct{})
		var respawns sync.WaitGroup
		for i := range names {
			name := fmt.Sprintf("stress-%d", i)
			respawns.Add(1)
			go func() {
				defer respawns.Done()
				for {
					ref, err := host.SpawnNamed(name, stressCallee(host))
					if errors.Is(err, ErrNameTaken) {
						// The old one is still unregistering.
						time.Sleep(time.Millisecond)
						continue
					}
					if err != nil {
						return
					}
					select {
					case <-stop:
						_ = host.Exit(ref, Normal)
						_ = host.Wait(t.Context(), ref)
						return
					case <-host.lookupDone(ref):
					}
				}
			}()
		}
		killerDone := make(chan struct{})
		go func() {
			defer close(killerDone)
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Duration(rand.IntN(2000)) * time.Microsecond):
				}
				_ = host.Exit(Ref{Name: fmt.Sprintf("stress-%d", rand.IntN(names)), Node: host.Name()}, Reason{Kind: ReasonKilled})
			}
		}()

		var counts [3]atomic.Int64 // replies, not processed, exited
		failures := make(chan error, callers)
		var wg sync.WaitGroup
		for range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range perCaller {
					op := rand.IntN(len(stressOps))
					ref := Ref{Name: fmt.Sprintf("stress-%d", rand.IntN(names)), Node: host.Name()}
					r, err := caller.Call(ref, echo{N: op}, callDeadline)
					switch {
					case err == nil:
						if want := (echo{N: op}); r != want {
							failures <- fmt.Errorf("%s: reply %v, want %v", stressOps[op], r, want)
							return
						}
						counts[0].Add(1)
					case errors.Is(err, ErrNoProcess):
						counts[1].Add(1)
					case errors.Is(err, ErrProcessExited):
						counts[2].Add(1)
					default:
						failures <- fmt.Errorf("%s: %w", stressOps[op], err)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(stop)
		respawns.Wait()
		<-killerDone
		close(failures)
		for err := range failures {
			t.Error(err)
		}
		t.Logf("%d replies, %d not processed, %d exited before replying", counts[0].Load(), counts[1].Load(), counts[2].Load())
		require.Equal(t, int64(callers*perCaller), counts[0].Load()+counts[1].Load()+counts[2].Load())
		// Nothing is left behind: no kept call on the host, no waiting
		// call on the caller.
		requireNoKeptCalls(t, host)
		for i := range caller.calls.shards {
			s := &caller.calls.shards[i]
			s.mu.Lock()
			size := len(s.m)
			s.mu.Unlock()
			require.Zero(t, size, "calls still waiting")
		}
	})
}

// lookupDone returns a channel closed when the process ref exits (at once
// if there is none).
func (n *Node) lookupDone(ref Ref) <-chan struct{} {
	if p := n.lookup(ref.Name); p != nil {
		return p.done
	}
	done := make(chan struct{})
	close(done)
	return done
}
