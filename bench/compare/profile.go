package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"time"
)

// profiles names the files a child writes its profiles to, so that a
// user can see where one system spends a cell, e.g.
//
//	go run . -child rago -dir /tmp/x -payloads 1024 -callers 512 -cpuprofile cpu.out
//
// The execution trace shows where time goes that no CPU profile shows:
// goroutines waiting to run after they were woken (go tool trace
// -pprof=sched trace.out).
type profiles struct{ cpu, heap, trace string }

// window is a recording that covers the measured window: it starts when
// the warm-up ends and stops with the cell.
type window struct {
	f       *os.File
	timer   *time.Timer
	started chan error
	stop    func()
}

func startWindow(path string, warmup time.Duration, start func(io.Writer) error, stop func()) (*window, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	w := &window{f: f, started: make(chan error, 1), stop: stop}
	if warmup <= 0 {
		w.started <- start(f)
		return w, nil
	}
	w.timer = time.AfterFunc(warmup, func() { w.started <- start(f) })
	return w, nil
}

// end stops the recording, if it started, and closes its file.
func (w *window) end() error {
	if w.timer != nil && w.timer.Stop() {
		w.started <- fmt.Errorf("%s did not start: the run ended within its warm-up", w.f.Name())
	}
	err := <-w.started
	if err == nil {
		w.stop()
	}
	return errors.Join(err, w.f.Close())
}

// start begins the CPU profile and the trace when the measured window
// begins (after warmup) and returns a function, to be called when it
// ends, that stops them and writes the heap profile.
func (p profiles) start(warmup time.Duration) (stop func() error, err error) {
	var windows []*window
	end := func() error {
		var errs []error
		for _, w := range windows {
			errs = append(errs, w.end())
		}
		return errors.Join(errs...)
	}
	if p.cpu != "" {
		w, err := startWindow(p.cpu, warmup, pprof.StartCPUProfile, pprof.StopCPUProfile)
		if err != nil {
			return nil, err
		}
		windows = append(windows, w)
	}
	if p.trace != "" {
		w, err := startWindow(p.trace, warmup, trace.Start, trace.Stop)
		if err != nil {
			return nil, errors.Join(err, end())
		}
		windows = append(windows, w)
	}
	return func() error {
		first := end()
		if p.heap != "" {
			runtime.GC()
			f, err := os.Create(p.heap)
			if err != nil {
				return errors.Join(first, err)
			}
			first = errors.Join(first, pprof.WriteHeapProfile(f), f.Close())
		}
		return first
	}, nil
}
