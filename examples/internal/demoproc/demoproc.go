// Package demoproc runs the nodes of an example's demo as child processes
// of the demo: it starts them, streams their output prefixed by node, says
// when one exits that the demo did not stop, stops them all in order, and
// reads the commands typed at the demo's prompt.
//
// What the nodes are, their command lines and the demo's commands are the
// example's own; this package knows only processes, ids and output.
package demoproc

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Supervisor runs a demo's child processes, each under an id ("n1"), and
// writes their output and its own messages to one output.
type Supervisor struct {
	color bool

	outMu sync.Mutex
	out   io.Writer

	mu     sync.Mutex
	procs  map[string]*Proc
	exited chan string
}

// Proc is one child process.
type Proc struct {
	cmd      *exec.Cmd
	done     chan struct{}
	stopping bool // the demo stopped it: its exit is no news
}

// New returns a supervisor that writes to out, in colour on a terminal.
func New(out io.Writer) *Supervisor {
	return &Supervisor{out: out, color: isTerminal(out), procs: map[string]*Proc{}, exited: make(chan string, 16)}
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited and its output is copied.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Kill kills the process (SIGKILL): its peers see it go at once.
func (p *Proc) Kill() error { return p.cmd.Process.Kill() }

// Exited delivers the id of a process that exited without the demo
// stopping it, after the demo said so.
func (s *Supervisor) Exited() <-chan string { return s.exited }

// Start runs program with args as process id, with env added to this
// process's environment; it fails if id runs already.
func (s *Supervisor) Start(id, program string, args, env []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.procs[id]; p != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s is running (pid %d)", id, p.Pid())
		}
	}
	cmd := exec.Command(program, args...)
	cmd.Env = append(os.Environ(), env...)
	setProcessGroup(cmd)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	p := &Proc{cmd: cmd, done: make(chan struct{})}
	s.procs[id] = p
	var copying sync.WaitGroup
	copying.Add(2)
	go func() { defer copying.Done(); s.copyLines(id, stdout) }()
	go func() { defer copying.Done(); s.copyLines(id, stderr) }()
	go func() {
		// Wait only once the output is copied: Wait closes the pipes.
		copying.Wait()
		err := cmd.Wait()
		s.mu.Lock()
		stopping := p.stopping
		s.mu.Unlock()
		close(p.done)
		if !stopping {
			s.Say("%s exited: %v", id, exitText(err))
			s.exited <- id
		}
	}()
	return nil
}

// Proc returns the process last started as id, running or not, or nil.
func (s *Supervisor) Proc(id string) *Proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.procs[id]
}

// Running returns the process of id if it runs, else nil.
func (s *Supervisor) Running(id string) *Proc {
	p := s.Proc(id)
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return nil
	default:
		return p
	}
}

// Endpoint is a node the demo waits for: its id and the base URL of its
// HTTP API.
type Endpoint struct{ ID, URL string }

// WaitUp waits until every node's HTTP API answers GET /status, within
// limit, and fails as soon as one of them exits instead (a port in use, a
// data directory of another node): its log, streamed above, says why.
func (s *Supervisor) WaitUp(hc *http.Client, limit time.Duration, nodes ...Endpoint) error {
	deadline := time.Now().Add(limit)
	for _, n := range nodes {
		p := s.Proc(n.ID)
		for {
			select {
			case <-p.done:
				return fmt.Errorf("%s stopped while starting; its log above says why", n.ID)
			default:
			}
			if resp, err := hc.Get(n.URL + "/status"); err == nil {
				resp.Body.Close()
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s does not answer on %s/ after %v", n.ID, n.URL, limit)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// Stop stops one process cleanly: SIGTERM (after SIGCONT, for one frozen
// from outside), and SIGKILL if it takes longer than 20 seconds. Its exit
// is not reported.
func (s *Supervisor) Stop(p *Proc) error {
	s.mu.Lock()
	p.stopping = true
	s.mu.Unlock()
	resume(p.cmd.Process)
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.Kill()
		<-p.done
	}
	return nil
}

// StopAll asks every running process to stop (SIGTERM, after SIGCONT for
// a frozen one), all at once, waits for them, and kills those that take
// more than 20 seconds.
func (s *Supervisor) StopAll() {
	s.mu.Lock()
	var running []*Proc
	for _, p := range s.procs {
		select {
		case <-p.done:
		default:
			p.stopping = true
			running = append(running, p)
		}
	}
	s.mu.Unlock()
	for _, p := range running {
		resume(p.cmd.Process)
		_ = p.Signal(syscall.SIGTERM)
	}
	deadline := time.After(20 * time.Second)
	for _, p := range running {
		select {
		case <-p.done:
		case <-deadline:
			_ = p.Kill()
			<-p.done
		}
	}
}

func exitText(err error) string {
	if err == nil {
		return "status 0"
	}
	return err.Error()
}

// copyLines copies a child's output line by line, prefixed with its id
// (coloured by the number in it, on a terminal), so that the nodes' logs
// can be told apart.
func (s *Supervisor) copyLines(id string, r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	prefix := fmt.Sprintf("%-3s | ", id)
	if s.color {
		i, _ := strconv.Atoi(strings.TrimPrefix(id, "n"))
		prefix = fmt.Sprintf("\x1b[%dm%s\x1b[0m", 31+(i%6), prefix)
	}
	for sc.Scan() {
		s.outMu.Lock()
		fmt.Fprintf(s.out, "%s%s\n", prefix, sc.Text())
		s.outMu.Unlock()
	}
}

// Say writes a message of the demo itself, prefixed "demo | ".
func (s *Supervisor) Say(format string, args ...any) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	fmt.Fprintf(s.out, "demo | "+format+"\n", args...)
}

// Print runs f with the output to itself: the nodes' lines wait until f
// returns, so that a banner comes out whole.
func (s *Supervisor) Print(f func(w io.Writer)) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	f(s.out)
}

// Signals catches Ctrl-C and SIGTERM for the demo until stop is called.
// Ctrl-C goes to the demo alone (the nodes run in their own process
// group), which stops the nodes in order.
func Signals() (sig <-chan os.Signal, stop func()) {
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	return ch, func() { signal.Stop(ch) }
}

// Prompt runs the demo's prompt: it passes every line of stdin to command,
// reports processes that exit by themselves, and returns when command
// says to quit or a signal comes on sig. The caller then stops the nodes.
func (s *Supervisor) Prompt(sig <-chan os.Signal, stdin io.Reader, command func(line string) (quit bool)) {
	lines := make(chan string)
	go readLines(stdin, lines)
	for {
		select {
		case sg := <-sig:
			s.Say("%s: stopping the nodes", sg)
			return
		case id := <-s.exited:
			s.Say("%s is not running any more; type 'start %s' to start it again", id, id)
		case line, ok := <-lines:
			if !ok {
				lines = nil // stdin closed: keep running until a signal
				continue
			}
			if command(line) {
				return
			}
		}
	}
}

func readLines(r io.Reader, out chan<- string) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		out <- sc.Text()
	}
	close(out)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// ErrPortsBusy: an address the demo's nodes need is taken.
var ErrPortsBusy = errors.New("ports in use")

// Ports are the addresses a node listens on.
type Ports struct{ ID, Raft, HTTP string }

// CheckPorts fails if an address of the nodes is taken, before any
// starts: nodes started on a busy port die at once, and the demo would
// have nothing to show. fresh says whether the layout is new (its ports
// can be chosen) or recorded in layoutPath, where what recorded it, in
// the hint, is what (a "cluster", a "fleet").
func CheckPorts(nodes []Ports, fresh bool, layoutPath, what string) error {
	var busy []string
	for _, n := range nodes {
		for _, a := range []struct{ what, addr string }{{"Raft", n.Raft}, {"HTTP", n.HTTP}} {
			ln, err := net.Listen("tcp", a.addr)
			if err != nil {
				busy = append(busy, fmt.Sprintf("%s (%s of %s: %v)", a.addr, a.what, n.ID, errors.Unwrap(err)))
				continue
			}
			ln.Close()
		}
	}
	if len(busy) == 0 {
		return nil
	}
	hint := "stop what holds them, or choose other ports with --raft-port and --http-port"
	if !fresh {
		hint = fmt.Sprintf("the %s recorded in %s keeps its addresses: stop what holds them, or use another --data for a new %s", what, layoutPath, what)
	}
	return fmt.Errorf("%w: %s; %s", ErrPortsBusy, strings.Join(busy, ", "), hint)
}
