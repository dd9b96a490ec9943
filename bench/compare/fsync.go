package main

import (
	"os"
	"syscall"
	"time"
)

// measureFdatasync appends 4 KiB to a file in dir and fdatasyncs it, in a
// loop for d, and returns the median time of one append and sync: the
// disk's floor for one durable write, in the file system the data
// directories use.
func measureFdatasync(dir string, d time.Duration) (time.Duration, error) {
	f, err := os.CreateTemp(dir, "fdatasync")
	if err != nil {
		return 0, err
	}
	defer settle()
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	var lat histogram
	for end := time.Now().Add(d); time.Now().Before(end); {
		start := time.Now()
		if _, err := f.Write(buf); err != nil {
			return 0, err
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return 0, err
		}
		lat.record(time.Since(start))
	}
	return lat.percentile(50), nil
}
