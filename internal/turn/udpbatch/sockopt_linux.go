package udpbatch

import (
	"net"
	"syscall"
)

// socketBuffer is the kernel buffer asked for on every UDP socket. The default (about 200 KiB) fills in
// a few milliseconds at the rate a busy relay reads, and what does not fit is lost.
const socketBuffer = 4 << 20

// SetBuffers enlarges c's kernel buffers. As root SO_RCVBUFFORCE passes net.core.rmem_max; otherwise
// the kernel caps the size silently, which is still no worse than the default.
func SetBuffers(c net.PacketConn) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		for _, o := range [][2]int{{syscall.SO_RCVBUFFORCE, syscall.SO_RCVBUF}, {syscall.SO_SNDBUFFORCE, syscall.SO_SNDBUF}} {
			if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, o[0], socketBuffer) != nil {
				syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, o[1], socketBuffer)
			}
		}
	})
}
