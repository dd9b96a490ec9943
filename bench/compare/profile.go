package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

// profiles names the files a child writes its profiles to, so that a
// user can see where one system spends a cell, e.g.
//
//	go run . -child rago -dir /tmp/x -payloads 1024 -callers 512 -cpuprofile cpu.out
type profiles struct{ cpu, heap string }

// start begins the CPU profile when the measured window begins (after
// warmup) and returns a function, to be called when it ends, that stops
// it and writes the heap profile.
func (p profiles) start(warmup, duration time.Duration) (stop func() error, err error) {
	var cpu *os.File
	timer := (*time.Timer)(nil)
	started := make(chan error, 1)
	if p.cpu != "" {
		if cpu, err = os.Create(p.cpu); err != nil {
			return nil, err
		}
		timer = time.AfterFunc(warmup, func() { started <- pprof.StartCPUProfile(cpu) })
	}
	return func() error {
		var first error
		if cpu != nil {
			if timer.Stop() {
				started <- fmt.Errorf("the CPU profile did not start: the run ended within its warm-up")
			}
			if err := <-started; err != nil {
				first = err
			} else {
				pprof.StopCPUProfile()
			}
			if err := cpu.Close(); err != nil && first == nil {
				first = err
			}
		}
		if p.heap != "" {
			runtime.GC()
			f, err := os.Create(p.heap)
			if err != nil {
				return err
			}
			if err := pprof.WriteHeapProfile(f); err != nil && first == nil {
				first = err
			}
			if err := f.Close(); err != nil && first == nil {
				first = err
			}
		}
		return first
	}, nil
}
