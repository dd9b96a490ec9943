package failuredetector

import "sync/atomic"

// Stats are the detector's counters since Start. The process updates them
// as it decides; reading them takes no lock and sends no message.
type Stats struct {
	// Suspicions counts the times a tracked node went from trusted to
	// suspected (its watchers were told Suspected).
	Suspicions int64
	// Cleared counts the times a suspected node was heard from again and
	// became trusted (its watchers were told Up).
	Cleared int64
	// Suspected is the number of nodes suspected now. It is Suspicions
	// less Cleared less the suspected nodes the detector stopped tracking
	// (nobody watches them any more); zero after Stop.
	Suspected int64
}

// statsCounters are updated by the detector process and read by anyone.
type statsCounters struct {
	suspicions, cleared, suspected atomic.Int64
}

// Stats returns the detector's counters. Safe from any goroutine.
func (d *Detector) Stats() Stats {
	return Stats{
		Suspicions: d.stats.suspicions.Load(),
		Cleared:    d.stats.cleared.Load(),
		Suspected:  d.stats.suspected.Load(),
	}
}
