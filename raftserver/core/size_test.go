package core

import (
	"testing"
	"unsafe"
)

// TestRaftKeepsItsSize: a node may host thousands of idle members, each
// with one Raft. Up to 1272 bytes it is an allocation of 1280 (the runtime
// puts an 8-byte header before an object of more than 512 bytes that holds
// pointers); a field more moves it to the next size, 1408. If that is
// worth it, change the figure here knowingly.
func TestRaftKeepsItsSize(t *testing.T) {
	if got := unsafe.Sizeof(Raft{}); got > 1280-8 {
		t.Fatalf("Raft is %d bytes, more than %d", got, 1280-8)
	}
}
