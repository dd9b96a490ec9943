package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/examples/kvstore/internal/api"
	"github.com/rago-raft/rago/examples/kvstore/internal/client"
	"github.com/rago-raft/rago/examples/kvstore/internal/kv"
)

// A watch sees every change of its prefix once, in revision order, CAS
// outcomes included, across the loss of the leader it streamed from.
func TestWatchAcrossALeaderChange(t *testing.T) {
	c := startCluster(t, 3)
	ctx := ctxFor(t)
	cl := c.client(c.nodes...)
	str := func(s string) *string { return &s }
	first, err := cl.Put(ctx, "w/0", []byte("before"))
	require.NoError(t, err)

	events := make(chan api.WatchEvent, 100)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watching := make(chan error, 1)
	go func() {
		watching <- c.client(c.nodes...).Watch(wctx, "w/", first.Revision, func(ev api.WatchEvent) error {
			events <- ev
			return nil
		})
	}()
	var got []string
	var last uint64
	await := func(want int) {
		t.Helper()
		for len(got) < want {
			select {
			case ev := <-events:
				require.Greater(t, ev.Revision, last, "revisions grow: nothing repeated")
				last = ev.Revision
				got = append(got, strings.TrimSpace(ev.Op+" "+ev.Key+" "+ev.Value))
			case err := <-watching:
				t.Fatalf("the watch ended: %v", err)
			case <-time.After(waitFor):
				t.Fatalf("only %d of %d changes: %q", len(got), want, got)
			}
		}
	}
	await(1)

	_, err = cl.Put(ctx, "w/1", []byte("one"))
	require.NoError(t, err)
	_, err = cl.Put(ctx, "x/1", []byte("not watched"))
	require.NoError(t, err)
	_, err = cl.CAS(ctx, "w/1", api.CASRequest{Expected: []byte(`"wrong"`), Value: str("no")})
	require.Error(t, err, "a mismatch changes nothing")
	_, err = cl.CAS(ctx, "w/1", api.CASRequest{Expected: []byte(`"one"`), Value: str("two")})
	require.NoError(t, err)
	_, err = cl.Delete(ctx, "w/0")
	require.NoError(t, err)
	await(4)

	// The leader, which the watch's client prefers, goes. A write in
	// flight to it has an unknown outcome: read the key before writing it
	// again, as a client must, so that each is applied once.
	c.kill(c.leader(c.nodes[0]))
	for i := 2; i < 5; i++ {
		key, val := fmt.Sprintf("w/%d", i), fmt.Sprint(i)
		for {
			_, err := cl.Put(ctx, key, []byte(val))
			var ae *api.Error
			if err == nil {
				break
			}
			require.True(t, errors.Is(err, client.ErrOutcomeUnknown) || errors.As(err, &ae) && ae.OutcomeUnknown, "%v", err)
			var got api.GetResult
			require.Eventually(t, func() bool {
				got, err = cl.Get(ctx, key, "")
				return err == nil || errors.As(err, &ae) && ae.Code == api.CodeKeyNotFound
			}, waitFor, 10*time.Millisecond, "read %s", key)
			if got.Value == val {
				break // it was applied
			}
		}
	}
	await(7)
	require.Equal(t, []string{"put w/0 before", "put w/1 one", "put w/1 two", "delete w/0", "put w/2 2", "put w/3 3", "put w/4 4"}, got)
	select {
	case ev := <-events:
		t.Fatalf("an extra change: %+v", ev)
	case <-time.After(300 * time.Millisecond):
	}

	// The command line prints the same changes.
	var out, errOut bytes.Buffer
	var alive []string
	for _, p := range c.nodes {
		p.mu.Lock()
		done := p.done
		p.mu.Unlock()
		select {
		case <-done:
			continue
		default:
		}
		{
			alive = append(alive, p.url())
		}
	}
	code := run([]string{"watch", "w/", "--from-revision", fmt.Sprint(first.Revision), "--count", "7", "--addr", strings.Join(alive, ","), "--timeout", "30s"}, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 7)
	require.True(t, strings.HasSuffix(lines[0], "\tput\tw/0\tbefore"), lines[0])
	require.True(t, strings.HasSuffix(lines[3], "\tdelete\tw/0"), lines[3])
}

// A watch from a revision older than the history the nodes keep is refused
// with 410 compacted, which says where a watch can start.
func TestWatchOfAForgottenRevision(t *testing.T) {
	c := startCluster(t, 3)
	ctx := ctxFor(t)
	cl := c.client(c.nodes...)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < kv.HistoryChanges+100; i += 16 {
				_, err := cl.Put(ctx, fmt.Sprint("k", i%50), []byte("v"))
				var ae *api.Error
				if err != nil && !(errors.As(err, &ae) && ae.OutcomeUnknown) {
					// (A write of unknown outcome on a loaded machine
					// still counts: the history needs many changes, not
					// these exactly.)
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	require.NoError(t, <-errs)

	leader := c.leader(c.nodes[0])
	r := doPath(t, http.MethodGet, leader.url(), "/watch?from_revision=1", nil)
	require.Equal(t, http.StatusGone, r.status)
	e := r.apiError(t)
	require.Equal(t, api.CodeCompacted, e.Code)
	require.Greater(t, e.Since, uint64(100))

	err := c.client(leader).Watch(ctx, "", 1, func(api.WatchEvent) error { return nil })
	var ae *api.Error
	require.ErrorAs(t, err, &ae)
	require.Equal(t, api.CodeCompacted, ae.Code)

	// From Since on it works.
	got := make(chan api.WatchEvent, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_ = c.client(leader).Watch(wctx, "", e.Since, func(ev api.WatchEvent) error {
			got <- ev
			cancel()
			return nil
		})
	}()
	select {
	case ev := <-got:
		require.GreaterOrEqual(t, ev.Revision, e.Since)
	case <-time.After(waitFor):
		t.Fatal("no change from Since on")
	}

	var out, errOut bytes.Buffer
	require.Equal(t, 1, run([]string{"watch", "--from-revision", "1", "--addr", leader.url(), "--timeout", "10s"}, &out, &errOut))
	require.Contains(t, errOut.String(), "compacted")
}
