// Package exampletest is what the examples' tests share to run the example
// program itself: the test binary doubling as the program, free port
// ranges, the output of a process to wait on, and a demo driven through
// its prompt. Only _test files import it.
package exampletest

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
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

// Program is the test binary as the example program: with RunMainEnv set
// to 1 it runs the command line in os.Args, so the tests start real node
// processes (and a demo's children) without building anything else.
type Program struct {
	RunMainEnv string
	// WaitFor bounds every wait for the program to reach a state. It is a
	// deadline, not a measurement.
	WaitFor time.Duration
}

// Main is the test binary's TestMain: the program when asked to be, else
// the tests.
func (p Program) Main(m *testing.M, run func(args []string, stdout, stderr io.Writer) int) {
	if os.Getenv(p.RunMainEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// NewOutput returns an Output whose waits last p.WaitFor.
func (p Program) NewOutput() *Output { return &Output{limit: p.WaitFor} }

// The free ports below are taken under the kernel's range of ephemeral
// ports. A port from that range (what listening on port 0 returns) can be
// taken, between the test's check and the node's listen, as the source
// port of any outgoing connection on the machine, and then stays taken
// for that connection's life: a node could not listen for seconds.
const lowestPort = 10000

// ephemeralLow is the first port of the kernel's ephemeral range (Linux's
// default where it cannot be read; BSD and macOS start higher).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	if f := strings.Fields(string(b)); len(f) == 2 {
		if lo, err := strconv.Atoi(f[0]); err == nil {
			return lo
		}
	}
	return 32768
}

// FreeAddr returns 127.0.0.1 with a port that was free a moment ago,
// below the ephemeral range when there is room there, so that only
// another test picking the same port at the same moment can take it.
func FreeAddr(t testing.TB) string {
	t.Helper()
	if hi := ephemeralLow(); hi-lowestPort >= 1000 {
		for range 200 {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(lowestPort+rand.IntN(hi-lowestPort)))
			if err == nil {
				addr := l.Addr().String()
				require.NoError(t, l.Close())
				return addr
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// FreeRange returns the first of n consecutive free ports on 127.0.0.1
// that avoid the ranges starting at taken (each n long), below the
// ephemeral range when there is room there (see FreeAddr).
func FreeRange(t *testing.T, n int, taken ...int) int {
	t.Helper()
	lo, hi := lowestPort, ephemeralLow()
	if hi-lo < 1000 {
		lo, hi = 20000, 60000
	}
	for range 200 {
		base := lo + rand.IntN(hi-lo-n)
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

// Output collects a process's output for the test to wait on.
type Output struct {
	limit time.Duration

	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *Output) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(b)
}

func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// WaitFor waits until the output contains s, and fails the test with the
// output's last lines if it does not in time.
func (o *Output) WaitFor(t *testing.T, s string) {
	t.Helper()
	require.Eventually(t, func() bool { return strings.Contains(o.String(), s) }, o.limit, 20*time.Millisecond,
		"output to contain %q; it is:\n%s", s, LastLines(o.String(), 40))
}

// LastLines returns the last n lines of s.
func LastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Demo is the program's demo, run as a process with its prompt on Stdin.
type Demo struct {
	Cmd   *exec.Cmd
	Stdin io.WriteCloser
	Out   *Output
	done  chan error
	limit time.Duration
}

// StartDemo runs "demo" with args. The test's end kills it if it still
// runs (its nodes follow it), and a failed test logs its output.
func (p Program) StartDemo(t *testing.T, args ...string) *Demo {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"demo"}, args...)...)
	cmd.Env = append(os.Environ(), p.RunMainEnv+"=1")
	d := &Demo{Cmd: cmd, Out: p.NewOutput(), done: make(chan error, 1), limit: p.WaitFor}
	cmd.Stdout, cmd.Stderr = d.Out, d.Out
	var err error
	d.Stdin, err = cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("demo output (last lines):\n%s", LastLines(d.Out.String(), 80))
		}
	})
	return d
}

// Send types a line at the demo's prompt.
func (d *Demo) Send(t *testing.T, line string) {
	t.Helper()
	_, err := io.WriteString(d.Stdin, line+"\n")
	require.NoError(t, err)
}

// Stop sends Ctrl-C's signal and waits for a clean exit, with no data
// race reported on the way (under -race the nodes run with the detector
// too, and their output is the demo's).
func (d *Demo) Stop(t *testing.T) {
	t.Helper()
	require.NoError(t, d.Cmd.Process.Signal(syscall.SIGINT))
	select {
	case err := <-d.done:
		require.NoError(t, err, "demo exit; output:\n%s", LastLines(d.Out.String(), 40))
	case <-time.After(d.limit):
		t.Fatalf("the demo did not stop; output:\n%s", LastLines(d.Out.String(), 40))
	}
	d.Out.WaitFor(t, "all nodes stopped")
	require.NotContains(t, d.Out.String(), "WARNING: DATA RACE")
}
