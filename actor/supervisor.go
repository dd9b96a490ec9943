package actor

import (
	"context"
	"fmt"
	"time"
)

// RestartPolicy says when a supervisor restarts a child that exited.
type RestartPolicy uint8

const (
	// Permanent children are always restarted.
	Permanent RestartPolicy = iota
	// Transient children are restarted only after an abnormal exit
	// (Reason.Abnormal: crash, error, killed).
	Transient
	// Temporary children are never restarted.
	Temporary
)

// Strategy says which children a supervisor restarts when one exits.
type Strategy uint8

const (
	// OneForOne restarts only the child that exited.
	OneForOne Strategy = iota
	// OneForAll stops the other children and restarts them all.
	OneForAll
	// RestForOne stops the children started after the one that exited and
	// restarts it and them, in order.
	RestForOne
)

// ChildSpec describes one supervised child.
type ChildSpec struct {
	// Name registers the child; it keeps the name across restarts, so refs
	// to it stay valid.
	Name string
	// Start returns a fresh Process for every start and restart.
	Start func() Process
	// Restart is the child's restart policy (default Permanent).
	Restart RestartPolicy
	// ShutdownTimeout bounds how long stopping the child may take before
	// the supervisor gives up waiting. Default 5s.
	ShutdownTimeout time.Duration
	// Options are given to every spawn of the child (e.g. HighPriority).
	Options []SpawnOption
}

// SupervisorSpec describes a supervisor: its strategy, its restart budget
// and its initial children, started in order.
//
// If more than Intensity restarts happen within Period, the supervisor
// concludes that restarting does not help: it stops every child, logs an
// error and exits with a ReasonError reason that says so, which its own
// monitors (or its supervisor) see in their Down.
type SupervisorSpec struct {
	Strategy  Strategy
	Intensity int           // default 3
	Period    time.Duration // default 5s
	Children  []ChildSpec
}

const defaultChildShutdown = 5 * time.Second

// ChildInfo describes a supervised child.
type ChildInfo struct {
	Name     string
	Ref      Ref
	Running  bool
	Restarts int
}

// StartSupervisor starts a supervisor registered as name and its children.
// It returns once every child was spawned, or fails (stopping the ones
// that were) if one could not be.
func (n *Node) StartSupervisor(name string, spec SupervisorSpec) (Ref, error) {
	if spec.Intensity < 0 || spec.Period < 0 {
		return Ref{}, fmt.Errorf("%w: supervisor %s: Intensity %d and Period %v must not be negative", ErrInvalidConfig, name, spec.Intensity, spec.Period)
	}
	if spec.Intensity == 0 {
		spec.Intensity = 3
	}
	if spec.Period == 0 {
		spec.Period = 5 * time.Second
	}
	for _, c := range spec.Children {
		if err := validateChild(c); err != nil {
			return Ref{}, err
		}
	}
	s := &supervisor{spec: spec}
	ref, err := n.SpawnNamed(name, s, HighPriority())
	if err != nil {
		return Ref{}, err
	}
	reply, err := n.Call(ref, supInit{}, time.Minute)
	if err != nil {
		_ = n.Exit(ref, Shutdown)
		return Ref{}, err
	}
	if err, ok := reply.(error); ok && err != nil {
		return Ref{}, err
	}
	return ref, nil
}

func validateChild(c ChildSpec) error {
	if err := validateName(c.Name); err != nil {
		return err
	}
	if c.Start == nil {
		return fmt.Errorf("%w: child %q has no Start function", ErrInvalidConfig, c.Name)
	}
	if c.Restart > Temporary || c.ShutdownTimeout < 0 {
		return fmt.Errorf("%w: child %q: restart policy %d, shutdown timeout %v", ErrInvalidConfig, c.Name, c.Restart, c.ShutdownTimeout)
	}
	return nil
}

// StartChild adds a child to a running supervisor on this node and starts
// it. It fails with ErrNameTaken if the supervisor has a child of that name
// or the name is registered.
func (n *Node) StartChild(ctx context.Context, sup Ref, spec ChildSpec) (Ref, error) {
	if !n.IsLocal(sup) {
		return Ref{}, fmt.Errorf("%w: supervisor %s", ErrNotLocal, sup)
	}
	if err := validateChild(spec); err != nil {
		return Ref{}, err
	}
	reply, err := n.CallContext(ctx, sup, supStartChild{spec: spec})
	if err != nil {
		return Ref{}, err
	}
	r := reply.(supChildResult)
	return r.ref, r.err
}

// TerminateChild stops a supervised child and forgets it, waiting for it
// to exit. It fails with ErrNoChild if the supervisor has no such child.
func (n *Node) TerminateChild(ctx context.Context, sup Ref, name string) error {
	if !n.IsLocal(sup) {
		return fmt.Errorf("%w: supervisor %s", ErrNotLocal, sup)
	}
	reply, err := n.CallContext(ctx, sup, supTerminateChild{name: name})
	if err != nil {
		return err
	}
	if err, ok := reply.(error); ok {
		return err
	}
	return nil
}

// WhichChildren lists a supervisor's children in start order.
func (n *Node) WhichChildren(ctx context.Context, sup Ref) ([]ChildInfo, error) {
	if !n.IsLocal(sup) {
		return nil, fmt.Errorf("%w: supervisor %s", ErrNotLocal, sup)
	}
	reply, err := n.CallContext(ctx, sup, supWhichChildren{})
	if err != nil {
		return nil, err
	}
	return reply.([]ChildInfo), nil
}

type (
	supInit           struct{}
	supStartChild     struct{ spec ChildSpec }
	supTerminateChild struct{ name string }
	supWhichChildren  struct{}
	supRetry          struct{ name string }
	supChildResult    struct {
		ref Ref
		err error
	}
)

type supervisor struct {
	spec     SupervisorSpec
	children []*child
	restarts []time.Time // restart times within the current period
	gaveUp   bool
}

type child struct {
	spec     ChildSpec
	ref      Ref
	mon      MonitorRef
	running  bool
	restarts int
}

func (s *supervisor) Receive(ctx *Context, msg Message) {
	switch m := msg.(type) {
	case supInit:
		for _, spec := range s.spec.Children {
			c := &child{spec: spec}
			if err := s.start(ctx, c); err != nil {
				s.stopAll(ctx)
				_ = ctx.Reply(err)
				ctx.Exit(ErrorReason(err))
				return
			}
			s.children = append(s.children, c)
		}
		_ = ctx.Reply(nil)
	case supStartChild:
		if s.find(m.spec.Name) != nil {
			_ = ctx.Reply(supChildResult{err: fmt.Errorf("%w: supervisor %s already has child %s", ErrNameTaken, ctx.Self(), m.spec.Name)})
			return
		}
		c := &child{spec: m.spec}
		if err := s.start(ctx, c); err != nil {
			_ = ctx.Reply(supChildResult{err: err})
			return
		}
		s.children = append(s.children, c)
		_ = ctx.Reply(supChildResult{ref: c.ref})
	case supTerminateChild:
		i := s.index(m.name)
		if i < 0 {
			_ = ctx.Reply(fmt.Errorf("%w: %s in supervisor %s", ErrNoChild, m.name, ctx.Self()))
			return
		}
		s.stop(ctx, s.children[i])
		s.children = append(s.children[:i], s.children[i+1:]...)
		_ = ctx.Reply(nil)
	case supWhichChildren:
		infos := make([]ChildInfo, 0, len(s.children))
		for _, c := range s.children {
			infos = append(infos, ChildInfo{Name: c.spec.Name, Ref: c.ref, Running: c.running, Restarts: c.restarts})
		}
		_ = ctx.Reply(infos)
	case Down:
		s.onChildDown(ctx, m)
	case supRetry:
		if c := s.find(m.name); c != nil && !c.running {
			s.restart(ctx, c, Reason{Kind: ReasonError, Detail: "previous start failed"})
		}
	case Terminating:
		s.stopAll(ctx)
	}
}

func (s *supervisor) index(name string) int {
	for i, c := range s.children {
		if c.spec.Name == name {
			return i
		}
	}
	return -1
}

func (s *supervisor) find(name string) *child {
	if i := s.index(name); i >= 0 {
		return s.children[i]
	}
	return nil
}

func (s *supervisor) start(ctx *Context, c *child) error {
	// Monitored from its birth: a child that fails at once (its Started
	// exits with an error) is a failure, not a child that never was.
	ref, mon, err := ctx.SpawnMonitor(c.spec.Name, c.spec.Start(), c.spec.Options...)
	if err != nil {
		return fmt.Errorf("supervisor %s: starting child %s: %w", ctx.Self(), c.spec.Name, err)
	}
	c.ref = ref
	c.mon = mon
	c.running = true
	return nil
}

// stop stops a running child and waits for it to exit, without treating
// the exit as a failure.
func (s *supervisor) stop(ctx *Context, c *child) {
	if !c.running {
		return
	}
	ctx.Demonitor(c.mon)
	c.running = false
	n := ctx.Node()
	if err := n.Exit(c.ref, Shutdown); err != nil {
		return // already gone
	}
	timeout := c.spec.ShutdownTimeout
	if timeout == 0 {
		timeout = defaultChildShutdown
	}
	wctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := n.Wait(wctx, c.ref); err != nil {
		ctx.Logger().Error("child did not stop in time", "child", c.spec.Name, "timeout", timeout)
	}
}

func (s *supervisor) stopAll(ctx *Context) {
	for i := len(s.children) - 1; i >= 0; i-- {
		s.stop(ctx, s.children[i])
	}
}

func (s *supervisor) onChildDown(ctx *Context, d Down) {
	var c *child
	for _, x := range s.children {
		if x.running && x.mon == d.Monitor {
			c = x
		}
	}
	if c == nil {
		return
	}
	c.running = false
	switch {
	case c.spec.Restart == Temporary,
		c.spec.Restart == Transient && !d.Reason.Abnormal():
		if i := s.index(c.spec.Name); i >= 0 && c.spec.Restart == Temporary {
			s.children = append(s.children[:i], s.children[i+1:]...)
		}
		return
	}
	if d.Reason.Abnormal() {
		ctx.Logger().Warn("child exited, restarting", "child", c.spec.Name, "reason", d.Reason.String())
	}
	s.restart(ctx, c, d.Reason)
}

// restart applies the strategy after c exited, within the restart budget.
func (s *supervisor) restart(ctx *Context, c *child, why Reason) {
	if s.gaveUp {
		return
	}
	now := time.Now()
	cut := now.Add(-s.spec.Period)
	kept := s.restarts[:0]
	for _, t := range s.restarts {
		if t.After(cut) {
			kept = append(kept, t)
		}
	}
	s.restarts = kept
	if len(s.restarts) >= s.spec.Intensity {
		s.giveUp(ctx, c, why)
		return
	}
	s.restarts = append(s.restarts, now)
	c.restarts++

	i := s.index(c.spec.Name)
	var group []*child
	switch s.spec.Strategy {
	case OneForOne:
		group = []*child{c}
	case OneForAll:
		group = s.children
	case RestForOne:
		group = s.children[i:]
	}
	for j := len(group) - 1; j >= 0; j-- {
		s.stop(ctx, group[j])
	}
	for _, g := range group {
		if err := s.start(ctx, g); err != nil {
			ctx.Logger().Error("restarting child failed", "child", g.spec.Name, "err", err)
			// Retry through the mailbox so the failure counts against the
			// restart budget like any other exit.
			_ = ctx.Send(ctx.Self(), supRetry{name: g.spec.Name})
			return
		}
	}
}

func (s *supervisor) giveUp(ctx *Context, c *child, why Reason) {
	s.gaveUp = true
	err := fmt.Errorf("supervisor %s: reached max restart intensity (%d restarts in %v); child %s exited: %s",
		ctx.Self(), s.spec.Intensity, s.spec.Period, c.spec.Name, why)
	ctx.Logger().Error("supervisor giving up", "err", err)
	s.stopAll(ctx)
	ctx.Exit(ErrorReason(err))
}
