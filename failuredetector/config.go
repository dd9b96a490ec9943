package failuredetector

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Errors returned by this package. Check them with errors.Is; they are
// wrapped with the values or names involved.
var (
	// ErrInvalidConfig: a Config field is out of range, or two fields
	// contradict each other. The message names the fields and values.
	ErrInvalidConfig = errors.New("failuredetector: invalid configuration")
	// ErrInvalidWatch: Watch or Unwatch got an empty node name or a
	// watcher that is not a process of the detector's own node (notices
	// are for local processes only; a remote watcher should use its own
	// node's detector).
	ErrInvalidWatch = errors.New("failuredetector: invalid watch")
	// ErrStopped: the detector was stopped, or its process is gone. Its
	// watchers get no more notices.
	ErrStopped = errors.New("failuredetector: detector stopped")
)

// Config configures a Detector. Start from DefaultConfig and change what
// you need: zero values are not replaced by defaults (except Logger), so a
// field left at zero by mistake fails Validate instead of silently meaning
// something.
//
// Every node of a system should use the same Interval: a window adapts to
// a peer that heartbeats at another pace, but only after it has seen
// enough of its heartbeats, and until then it may suspect it wrongly.
type Config struct {
	// Interval is how often the detector sends a heartbeat to each node it
	// tracks. It is also the inter-arrival time a window assumes for a
	// peer before it has MinSamples samples of its own. Default 200ms: 5
	// small messages per second per node pair and direction, whatever the
	// number of clusters.
	Interval time.Duration
	// CheckInterval is how often suspicion is evaluated. A node is
	// suspected at most CheckInterval after its silence crossed the
	// threshold. Default 100ms.
	CheckInterval time.Duration
	// Threshold is the suspicion level (phi) at which a node is suspected:
	// phi = -log10 P(a heartbeat still comes after this much silence), so
	// 8 means "a live node would be this late once in 10^8 intervals".
	// Must be in [1, MaxPhi/2]: below 1 a live node would be suspected
	// every tenth heartbeat. Default 8.
	Threshold float64
	// AcceptablePause is silence a live node may show beyond its usual
	// pace without raising suspicion (a GC pause, a slow scheduler, a lost
	// and retransmitted TCP segment). It shifts the expected arrival time,
	// so a window that saw only perfectly regular heartbeats does not
	// suspect a node that is a few milliseconds late. Default 400ms.
	AcceptablePause time.Duration
	// MinStdDev is the floor on the standard deviation of inter-arrival
	// times, for the same reason as AcceptablePause. Default 50ms.
	MinStdDev time.Duration
	// WindowSize is how many inter-arrival times each window keeps.
	// Default 100 (20 s of history at the default Interval).
	WindowSize int
	// MinSamples is how many inter-arrival times a window needs before it
	// trusts its own statistics; before that it assumes a mean of Interval
	// and a standard deviation of max(MinStdDev, Interval/4). At least 2;
	// at most WindowSize. Default 5.
	MinSamples int
	// Disconnect makes the detector call actor.Node.Disconnect for a node
	// when it becomes suspected while local processes watch it: queued
	// messages to the node are dropped, monitors on its processes get Down
	// with noconnection, node monitors get NodeDown, like Erlang's
	// net_ticktime. Default true (see docs/failure-detector.md for why).
	Disconnect bool
	// Logger receives the detector's logs (transitions at Info, details at
	// Debug); nil discards them.
	Logger *slog.Logger
}

// MaxPhi is the largest suspicion level Phi reports: beyond it the
// probability of a late heartbeat is below 10^-100 and floating point
// loses it anyway.
const MaxPhi = 100.0

// Limits on the window size, so a configuration cannot make every check
// scan an absurd number of samples.
const maxWindowSize = 10000

// DefaultConfig returns the default configuration: heartbeats every 200ms,
// checks every 100ms, phi threshold 8, 400ms acceptable pause, 50ms
// standard deviation floor, windows of 100 samples trusted from 5, and
// disconnect on suspicion. A node that stops answering is suspected about
// 0.7-1 s after its last heartbeat (see docs/failure-detector.md).
func DefaultConfig() Config {
	return Config{
		Interval:        200 * time.Millisecond,
		CheckInterval:   100 * time.Millisecond,
		Threshold:       8,
		AcceptablePause: 400 * time.Millisecond,
		MinStdDev:       50 * time.Millisecond,
		WindowSize:      100,
		MinSamples:      5,
		Disconnect:      true,
	}
}

// Validate checks every field and the relations between them. The error
// wraps ErrInvalidConfig and prints the offending values.
func (c Config) Validate() error {
	switch {
	case c.Interval < time.Millisecond:
		return fmt.Errorf("%w: Interval %v must be at least 1ms", ErrInvalidConfig, c.Interval)
	case c.CheckInterval < time.Millisecond:
		return fmt.Errorf("%w: CheckInterval %v must be at least 1ms", ErrInvalidConfig, c.CheckInterval)
	case c.CheckInterval > c.Interval:
		// Evaluating less often than heartbeats arrive only delays
		// detection; it is almost certainly a mix-up of the two fields.
		return fmt.Errorf("%w: CheckInterval %v must not exceed Interval %v", ErrInvalidConfig, c.CheckInterval, c.Interval)
	case !(c.Threshold >= 1 && c.Threshold <= MaxPhi/2):
		// Written as a negation so that NaN fails too.
		return fmt.Errorf("%w: Threshold %v must be in [1, %v]", ErrInvalidConfig, c.Threshold, MaxPhi/2)
	case c.AcceptablePause < 0:
		return fmt.Errorf("%w: AcceptablePause %v must not be negative", ErrInvalidConfig, c.AcceptablePause)
	case c.MinStdDev <= 0:
		return fmt.Errorf("%w: MinStdDev %v must be positive (a jitter-free window would otherwise suspect a node the moment it is late)", ErrInvalidConfig, c.MinStdDev)
	case c.MinSamples < 2:
		return fmt.Errorf("%w: MinSamples %d must be at least 2 (a deviation needs two samples)", ErrInvalidConfig, c.MinSamples)
	case c.WindowSize < c.MinSamples || c.WindowSize > maxWindowSize:
		return fmt.Errorf("%w: WindowSize %d must be in [MinSamples %d, %d]", ErrInvalidConfig, c.WindowSize, c.MinSamples, maxWindowSize)
	}
	return nil
}
