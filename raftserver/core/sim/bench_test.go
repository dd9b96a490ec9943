package sim

import (
	"testing"
	"time"
)

// BenchmarkSimulationSeed measures the simulation itself: one seeded run of
// a 3-member cluster under the default faults per iteration, including the
// message codec, the scheduler, the invariant checks and porcupine. It
// reports seeds, events and core steps per second.
//
//	go test ./raftserver/core/sim -run XXX -bench BenchmarkSimulationSeed -benchtime 200x
func BenchmarkSimulationSeed(b *testing.B) {
	events, steps := 0, 0
	start := time.Now()
	for i := 0; i < b.N; i++ {
		res := Run(DefaultOptions(uint64(i+1), 3))
		if res.Violation != nil {
			b.Fatalf("seed %d: %v", i+1, res.Violation)
		}
		events += res.Stats.Events
		steps += res.Stats.CoreSteps
	}
	sec := time.Since(start).Seconds()
	b.ReportMetric(float64(b.N)/sec, "seeds/s")
	b.ReportMetric(float64(events)/sec, "events/s")
	b.ReportMetric(float64(steps)/sec, "steps/s")
}
