//go:build !linux

package actor

import "net"

// kernelUnread is 0 where the kernel's receive queue is not queried: only
// bytes already read from the socket count as unread there.
func kernelUnread(net.Conn) int { return 0 }
