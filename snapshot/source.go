package snapshot

import (
	"bytes"
	"io"
)

// Source is a machine's point-in-time state, handed to the snapshot writer
// in a Write request and serialised later on another goroutine. It is how
// a machine takes a snapshot without blocking Apply for long: at the
// snapshot index the machine captures an immutable view of its state (a
// persistent data structure's root, a frozen copy-on-write generation, a
// copy of a small state) and returns at once; the writer streams the view
// to disk in the background while Apply goes on changing the live state.
//
// Threading rules, in the order things happen:
//
//   - The server builds the Source on its own goroutine, in the same step
//     as the Apply of the snapshot index, so the view is exactly the state
//     at that index. From then on the server must not touch the view.
//   - WriteTo is called at most once, on a writer job goroutine, while the
//     machine keeps applying commands on the server goroutine. It must read
//     only the immutable view (or state it synchronises itself). It must
//     write the whole state to w and return the first error w returns (a
//     full disk, the writer stopping); it must not keep w after returning.
//     The bytes are the machine's own format; the store checksums them.
//   - Release is called exactly once, after WriteTo returned, or without
//     WriteTo when the request is dropped (superseded, stale, invalid, the
//     writer stopping). It runs on a writer goroutine (job or process) and
//     may therefore race with Apply: a copy-on-write machine typically
//     decrements a counter or closes a channel there, with atomic
//     operations or a lock. After Release nothing of the view is touched.
//
// An error from WriteTo fails the write with ErrSource; a panic in WriteTo
// or Release is recovered, logged and fails the write too.
type Source interface {
	WriteTo(w io.Writer) (int64, error)
	Release()
}

// BytesSource is a Source over a state already serialised in memory; its
// Release does nothing. The bytes must not change until the write is done.
type BytesSource []byte

// WriteTo writes the bytes.
func (b BytesSource) WriteTo(w io.Writer) (int64, error) {
	return bytes.NewReader(b).WriteTo(w)
}

// Release does nothing.
func (BytesSource) Release() {}

// SourceFunc adapts a function (and an optional release function) to
// Source: Write calls Write, Release calls Free if it is set.
type SourceFunc struct {
	Write func(w io.Writer) (int64, error)
	Free  func()
}

// WriteTo calls f.Write.
func (f SourceFunc) WriteTo(w io.Writer) (int64, error) { return f.Write(w) }

// Release calls f.Free if set.
func (f SourceFunc) Release() {
	if f.Free != nil {
		f.Free()
	}
}
