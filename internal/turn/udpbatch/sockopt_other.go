//go:build !linux

package udpbatch

import "net"

// SetBuffers enlarges c's kernel buffers, as far as the platform lets a program.
func SetBuffers(c net.PacketConn) {
	if u, ok := c.(*net.UDPConn); ok {
		u.SetReadBuffer(4 << 20)
		u.SetWriteBuffer(4 << 20)
	}
}
