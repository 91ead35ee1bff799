// Package udpbatch is a UDP socket that reads with recvmmsg and writes with sendmmsg: the TURN relay's
// sockets, where one system call and one wake-up per datagram would be most of a packet's cost.
package udpbatch

import (
	"net"
	"sync"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Batching is the lever that matters for a relay in Go: on loopback or a fast network most of a
// relayed packet's cost is the system call and the wake-up of the goroutine that makes it. Conn
// reads with recvmmsg, so that one call and one wake-up serve every datagram waiting in the socket,
// and writes with sendmmsg when several goroutines write at once (every allocation's relay goroutine
// writes to the client through the same listener socket): the first writer sends what the others
// queued meanwhile, so nobody waits and nothing is delayed when there is no contention. Where the
// platform has no mmsg calls, x/net falls back to one datagram per call.

// batcher is what ipv4.PacketConn and ipv6.PacketConn share.
type batcher interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// datagramSize is what one read slot holds: pion reads into 1600 bytes and drops a datagram that
// fills them (it may have been cut), which covers TURN on any 1500-byte path.
const datagramSize = 1600

// maxQueued bounds the datagrams waiting to be sent on one socket. Past it a datagram is dropped, as
// a full socket buffer would drop it: queueing more only adds memory and delay to media.
const maxQueued = 256

var sendBuffers = sync.Pool{New: func() any { b := make([]byte, datagramSize); return &b }}

// Conn is a UDP socket that reads and writes in batches. One goroutine reads (pion has one read
// loop per socket); any number write.
type Conn struct {
	*net.UDPConn
	b batcher

	// read side, used by the single reader
	rmsgs  []ipv4.Message
	rn, ri int

	batchWrites bool
	wmu         sync.Mutex
	wq          []ipv4.Message // written and not yet sent
	spare       []ipv4.Message
	flushing    bool
}

// New wraps c with room for slots datagrams per read, and batches writes if batchWrites (for
// a socket many goroutines write to). It returns c itself when c is not a UDP socket.
func New(c net.PacketConn, slots int, batchWrites bool) net.PacketConn {
	u, ok := c.(*net.UDPConn)
	if !ok {
		return c
	}
	bc := &Conn{UDPConn: u, rmsgs: make([]ipv4.Message, slots), batchWrites: batchWrites}
	if a, ok := u.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() == nil && !a.IP.IsUnspecified() {
		bc.b = ipv6.NewPacketConn(u)
	} else {
		bc.b = ipv4.NewPacketConn(u)
	}
	buf := make([]byte, slots*datagramSize)
	for i := range bc.rmsgs {
		bc.rmsgs[i].Buffers = [][]byte{buf[i*datagramSize : (i+1)*datagramSize]}
	}
	return bc
}

// ReadFrom returns the next datagram of the current batch, reading a new batch when it is used up.
func (c *Conn) ReadFrom(p []byte) (int, net.Addr, error) {
	if c.ri >= c.rn {
		n, err := c.b.ReadBatch(c.rmsgs, 0)
		if err != nil {
			return 0, nil, err
		}
		c.rn, c.ri = n, 0
	}
	m := &c.rmsgs[c.ri]
	c.ri++
	return copy(p, m.Buffers[0][:m.N]), m.Addr, nil
}

// WriteTo queues p and sends the queue unless another writer is already sending it. UDP may lose a
// datagram anywhere on the way, so a send error is not reported to the writer of a queued one.
func (c *Conn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if !c.batchWrites || len(p) > datagramSize {
		return c.UDPConn.WriteTo(p, addr)
	}
	c.wmu.Lock()
	if c.flushing && len(c.wq) >= maxQueued {
		c.wmu.Unlock()
		return len(p), nil // dropped, as by a full socket buffer
	}
	bp := sendBuffers.Get().(*[]byte)
	buf := (*bp)[:len(p)]
	copy(buf, p)
	c.wq = append(c.wq, ipv4.Message{Buffers: [][]byte{buf}, Addr: addr})
	if c.flushing {
		c.wmu.Unlock()
		return len(p), nil
	}
	c.flushing = true
	var err error
	for len(c.wq) > 0 {
		batch := c.wq
		c.wq = c.spare[:0]
		c.wmu.Unlock()
		if e := c.send(batch); e != nil && err == nil {
			err = e
		}
		c.wmu.Lock()
		c.spare = batch[:0]
	}
	c.flushing = false
	c.wmu.Unlock()
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// send writes batch, skipping a datagram the kernel refuses (an unreachable peer, say) rather than
// giving up on the ones after it, and returns the buffers to the pool.
func (c *Conn) send(batch []ipv4.Message) error {
	var first error
	for sent := 0; sent < len(batch); {
		n, err := c.b.WriteBatch(batch[sent:], 0)
		if err != nil {
			if first == nil {
				first = err
			}
			n = 1 // drop the one that failed
		}
		sent += n
	}
	for i := range batch {
		b := batch[i].Buffers[0][:datagramSize]
		sendBuffers.Put(&b)
		batch[i] = ipv4.Message{}
	}
	return first
}
