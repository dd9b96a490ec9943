package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/rago-raft/rago/examples/kvstore/internal/api"
	"github.com/rago-raft/rago/internal/kvmodel"
	"github.com/stretchr/testify/require"
)

// TestLinearizableAcrossLeaderDeath: clients put and read linearizably
// through all three nodes at once while the leader is killed and comes
// back; the history of what they saw must be linearizable. A write whose
// outcome is unknown (504, broken connection) may take effect at any time
// after it was sent; failed reads and refused writes (503, connection
// refused) are left out, having no effect.
func TestLinearizableAcrossLeaderDeath(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	c := startCluster(t, 3)
	hc := &http.Client{Timeout: 15 * time.Second}
	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }

	var mu sync.Mutex
	var history []porcupine.Operation
	record := func(op porcupine.Operation) {
		mu.Lock()
		defer mu.Unlock()
		history = append(history, op)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	const clients = 4
	for id := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(id), 7))
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				node := c.nodes[rnd.IntN(len(c.nodes))]
				in := kvmodel.Input{Key: fmt.Sprint("lin/", rnd.IntN(3))}
				if rnd.IntN(2) == 0 {
					in.Put, in.Value = true, fmt.Sprintf("c%d-%d", id, seq)
				}
				if op, ok := linOp(hc, node.url(), in, now, id); ok {
					record(op)
				}
			}
		}()
	}

	// Let the clients run, kill the leader under them, bring it back.
	time.Sleep(time.Second)
	leader := c.leader(c.nodes[0])
	c.kill(leader)
	time.Sleep(2 * time.Second)
	c.start(leader)
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()

	puts, gets, unknown := 0, 0, 0
	for _, op := range history {
		switch {
		case op.Return == math.MaxInt64:
			unknown++
		case op.Input.(kvmodel.Input).Put:
			puts++
		default:
			gets++
		}
	}
	t.Logf("history: %d puts, %d gets, %d writes of unknown outcome", puts, gets, unknown)
	require.Positive(t, puts)
	require.Positive(t, gets)
	res, info := porcupine.CheckOperationsVerbose(kvmodel.Model, history, time.Minute)
	if res != porcupine.Ok {
		// Kept after the test (unlike t.TempDir) for a person to open.
		if f, err := os.CreateTemp("", "kvstore-history-*.html"); err == nil {
			if porcupine.Visualize(kvmodel.Model, info, f) == nil {
				t.Logf("the history is drawn in %s", f.Name())
			}
			f.Close()
		}
	}
	require.Equal(t, porcupine.Ok, res, "the history is not linearizable")
}

// linOp runs one operation against a node and returns it for the history,
// or false when it had no effect.
func linOp(hc *http.Client, base string, in kvmodel.Input, now func() int64, client int) (porcupine.Operation, bool) {
	op := porcupine.Operation{ClientId: client, Input: in, Call: now()}
	var req *http.Request
	if in.Put {
		req, _ = http.NewRequest(http.MethodPut, base+"/kv/"+in.Key, strings.NewReader(in.Value))
	} else {
		req, _ = http.NewRequest(http.MethodGet, base+"/kv/"+in.Key, nil)
	}
	resp, err := hc.Do(req)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	op.Return = now()
	var opErr *net.OpError
	switch {
	case err != nil && errors.As(err, &opErr) && opErr.Op == "dial":
		return op, false // never sent
	case err != nil || resp.StatusCode == http.StatusGatewayTimeout || resp.StatusCode >= 500 && resp.StatusCode != http.StatusServiceUnavailable:
		if !in.Put {
			return op, false
		}
		op.Return = math.MaxInt64 // it may take effect at any later time
		op.Output = kvmodel.Output{}
		return op, true
	case resp.StatusCode == http.StatusServiceUnavailable:
		return op, false // nothing was written
	case in.Put && resp.StatusCode == http.StatusOK:
		op.Output = kvmodel.Output{}
		return op, true
	case !in.Put && resp.StatusCode == http.StatusNotFound:
		op.Output = kvmodel.Output{}
		return op, true
	case !in.Put && resp.StatusCode == http.StatusOK:
		var g api.GetResult
		if json.Unmarshal(body, &g) != nil {
			return op, false
		}
		op.Output = kvmodel.Output{Found: true, Value: g.Value}
		return op, true
	}
	// Anything else (a 4xx) would be a bug in this test's requests.
	panic(fmt.Sprintf("unexpected answer %d: %s", resp.StatusCode, body))
}
