package main

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The test binary is also the fleet program: with runMainEnv set it runs
// the command line in os.Args, so the tests start real node processes
// (and the demo's children) without building anything else.
const runMainEnv = "FLEET_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// waitFor bounds every wait of the tests for the fleet to reach a state.
// It is a deadline, not a measurement: the states come much sooner, also
// under the race detector on two cores.
const waitFor = 90 * time.Second

// freeRange returns the first of n consecutive free ports on 127.0.0.1
// that avoid the ranges starting at taken (each n long).
func freeRange(t *testing.T, n int, taken ...int) int {
	t.Helper()
	for range 200 {
		base := 20000 + rand.IntN(40000)
		ok := true
		for _, x := range taken {
			if base+n > x && base < x+n {
				ok = false
			}
		}
		for i := 0; ok && i < n; i++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+i))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

// output collects a process's output for the test to wait on.
type output struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *output) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(b)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

func (o *output) waitFor(t *testing.T, s string) {
	t.Helper()
	require.Eventually(t, func() bool { return strings.Contains(o.String(), s) }, waitFor, 20*time.Millisecond,
		"output to contain %q; it is:\n%s", s, lastLines(o.String(), 40))
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

type demoRun struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *output
	done  chan error
}

func startDemo(t *testing.T, args ...string) *demoRun {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"demo"}, args...)...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	d := &demoRun{cmd: cmd, out: &output{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = d.out, d.out
	var err error
	d.stdin, err = cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		// A failed test may leave it running; its nodes follow it when it
		// is gone.
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("demo output (last lines):\n%s", lastLines(d.out.String(), 80))
		}
	})
	return d
}

// send types a line at the demo's prompt.
func (d *demoRun) send(t *testing.T, line string) {
	t.Helper()
	_, err := io.WriteString(d.stdin, line+"\n")
	require.NoError(t, err)
}

// stop sends Ctrl-C's signal and waits for a clean exit.
func (d *demoRun) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGINT))
	select {
	case err := <-d.done:
		require.NoError(t, err, "demo exit; output:\n%s", lastLines(d.out.String(), 40))
	case <-time.After(waitFor):
		t.Fatalf("the demo did not stop; output:\n%s", lastLines(d.out.String(), 40))
	}
	d.out.waitFor(t, "all nodes stopped")
	require.NotContains(t, d.out.String(), "WARNING: DATA RACE")
}

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
	out        *output

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
