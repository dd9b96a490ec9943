//go:build race

package sim

// raceEnabled: the race detector slows the simulation about tenfold, so the
// default sweep runs fewer seeds under it.
const raceEnabled = true
