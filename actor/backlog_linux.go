package actor

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// kernelUnread returns the bytes waiting in c's kernel receive buffer, or
// 0 if that cannot be known (c is closed, or not a socket).
func kernelUnread(c net.Conn) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = rc.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ); err == nil {
			n = v
		}
	})
	return n
}
