package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/examples/internal/exampletest"
)

// bin is the test binary as the fleet program (see exampletest.Program).
var bin = exampletest.Program{RunMainEnv: runMainEnv, WaitFor: waitFor}

const runMainEnv = "FLEET_TEST_RUN_MAIN"

func TestMain(m *testing.M) { bin.Main(m, run) }

// waitFor bounds every wait of the tests for the fleet to reach a state.
// It is a deadline, not a measurement: the states come much sooner, also
// under the race detector on two cores.
const waitFor = 90 * time.Second

type response struct {
	status int
	body   []byte
}

func call(t *testing.T, method, url, body string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{resp.StatusCode, b}
}

// getJSON gets url and decodes its JSON body into v.
func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &httpError{resp.StatusCode}
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

type httpError struct{ status int }

func (e *httpError) Error() string { return "HTTP " + strconv.Itoa(e.status) }

// nodeProc is one "serve" process of a test's fleet: the same command
// line at every start, so that a restart comes back on the same data and
// addresses.
type nodeProc struct {
	id, zone   string
	raft, http string
	args       []string
	out        *exampletest.Output

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *nodeProc) url() string { return "http://" + p.http }

// start runs the node; the test's cleanup kills it if it still runs.
func (p *nodeProc) start(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	require.Nil(t, p.cmd, "%s runs already", p.id)
	cmd := exec.Command(os.Args[0], p.args...)
	// The node stops by itself if the test binary dies without its
	// cleanup (a timeout's panic), instead of holding its ports.
	cmd.Env = append(os.Environ(), runMainEnv+"=1", parentEnv+"="+strconv.Itoa(os.Getpid()))
	cmd.Stdout, cmd.Stderr = p.out, p.out
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	t.Cleanup(p.kill)
}

// kill sends SIGKILL and waits for the process to be gone; a node that is
// not running is left alone.
func (p *nodeProc) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	p.cmd, p.done = nil, nil
}

// running reports whether the process runs (it was started, not killed,
// and has not exited by itself).
func (p *nodeProc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}
