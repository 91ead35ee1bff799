package turn

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"
)

// The guard sits in front of pion/turn on every listener. pion asks a PermissionHandler too, but it
// answers a refused ChannelBind with 401 Unauthorized, which tells a client its password is wrong.
// RFC 8656 wants 403 Forbidden for a peer the server will not relay to; coturn sends "403 Forbidden IP".
// So the guard answers authenticated CreatePermission, ChannelBind and Connect requests for forbidden
// peers itself, and passes everything else on untouched. pion's own check stays as a second line.
//
// It also refuses RFC 6062 TCP relays (Allocate with REQUESTED-TRANSPORT TCP) with 442: browsers never
// ask for them, and their data connections carry raw bytes to a peer that the rules made for datagrams
// (permissions per IP, the own-port rule) do not cover well.

// Request types of the methods the guard looks at (class "request" leaves the method bits as they are).
const (
	typeAllocate         = 0x0003
	typeCreatePermission = 0x0008
	typeChannelBind      = 0x0009
	typeConnect          = 0x000a
)

// guard refuses requests for forbidden peers before pion sees them.
type guard struct {
	s *Server
}

// guarded reports whether b is a STUN request the guard looks at, cheaply: ChannelData and every
// other message pass without being decoded.
func guarded(b []byte) bool {
	if !stun.IsMessage(b) {
		return false
	}
	switch binary.BigEndian.Uint16(b[0:2]) {
	case typeAllocate, typeCreatePermission, typeChannelBind, typeConnect:
		return true
	}
	return false
}

// protoTCP is REQUESTED-TRANSPORT's value for TCP (RFC 6062).
const protoTCP = 6

// intercept answers b itself if it asks for a forbidden peer, and says whether it did. reply sends a
// message back to the client.
func (g *guard) intercept(b []byte, src net.Addr, transport string, reply func([]byte) error) bool {
	if !guarded(b) {
		return false
	}
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if err := m.Decode(); err != nil {
		return false
	}
	if m.Type.Method == stun.MethodAllocate {
		requested, err := m.Get(stun.AttrRequestedTransport)
		if err != nil || len(requested) == 0 || requested[0] != protoTCP {
			return false
		}
		return g.answer(m, src, transport, reply, stun.CodeUnsupportedTransProto, "Unsupported Transport Protocol",
			reasonTCPRelay, "refused a TCP relay (RFC 6062): not offered")
	}
	var refusal *ForbiddenPeerError
	for _, a := range m.Attributes {
		if a.Type != stun.AttrXORPeerAddress {
			continue
		}
		one := &stun.Message{TransactionID: m.TransactionID}
		one.WriteHeader()
		one.Add(stun.AttrXORPeerAddress, a.Value)
		var peer stun.XORMappedAddress
		if err := peer.GetFromAs(one, stun.AttrXORPeerAddress); err != nil {
			return false // pion answers 400
		}
		if err := g.s.filter.Check(peer.IP); err != nil {
			errors.As(err, &refusal)
			break
		}
	}
	if refusal == nil {
		return false
	}
	return g.answer(m, src, transport, reply, stun.CodeForbidden, "Forbidden IP",
		reasonForbiddenPeer, "refused relay to a forbidden peer",
		"peer", refusal.Peer.String(), "range", refusal.Range.String(), "range_name", refusal.Name)
}

// answer refuses m with an error response, logged and counted, if m is authenticated; otherwise it
// leaves m to pion, which challenges it with 401.
func (g *guard) answer(m *stun.Message, src net.Addr, transport string, reply func([]byte) error,
	code stun.ErrorCode, reasonPhrase, reason, msg string, args ...any) bool {
	var username stun.Username
	var realm stun.Realm
	if username.GetFrom(m) != nil || realm.GetFrom(m) != nil {
		return false
	}
	_, user, err := ParseUsername(username.String())
	if err != nil {
		return false
	}
	integrity := stun.NewLongTermIntegrity(username.String(), realm.String(), restPassword(g.s.secret, username.String()))
	if integrity.Check(m) != nil {
		return false
	}
	g.s.refuse(reason, msg, append([]any{"user", user, "client", src.String(), "transport", transport,
		"method", m.Type.Method.String()}, args...)...)
	resp, err := stun.Build(
		stun.NewTransactionIDSetter(m.TransactionID),
		stun.NewType(m.Type.Method, stun.ClassErrorResponse),
		&stun.ErrorCodeAttribute{Code: code, Reason: []byte(reasonPhrase)},
		integrity, stun.Fingerprint,
	)
	if err == nil {
		reply(resp.Raw)
	}
	return true
}

// guardedPacketConn is a UDP listener with the guard in its read path.
type guardedPacketConn struct {
	net.PacketConn
	g *guard
}

func (c *guardedPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil || !c.g.intercept(p[:n], addr, "udp", func(b []byte) error {
			_, err := c.PacketConn.WriteTo(b, addr)
			return err
		}) {
			return n, addr, err
		}
	}
}

// guardedListener is a TCP or TLS listener whose connections have the guard in their read path. It
// keeps them, so that closing it (pion's Server.Close does) ends them too: pion closes only listeners.
type guardedListener struct {
	net.Listener
	g         *guard
	transport string
	idle      time.Duration

	mu     sync.Mutex
	conns  map[*guardedConn]struct{}
	closed bool
}

func (l *guardedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	gc := &guardedConn{Conn: c, g: l.g, transport: l.transport, idle: l.idle, ln: l,
		frames: pionturn.NewSTUNConn(c), buf: make([]byte, 0xffff+20)}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	if l.conns == nil {
		l.conns = map[*guardedConn]struct{}{}
	}
	l.conns[gc] = struct{}{}
	return gc, nil
}

// Close stops accepting and closes every connection accepted.
func (l *guardedListener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
	return err
}

// guardedConn splits a TCP stream into TURN frames (pion's STUNConn does the framing), lets the guard
// look at each, and hands the rest to pion one frame per Read. pion frames the stream again on its side.
type guardedConn struct {
	net.Conn
	g         *guard
	transport string
	idle      time.Duration
	ln        *guardedListener
	frames    *pionturn.STUNConn
	buf       []byte
	pending   []byte

	handshake sync.Once
	hsErr     error
	wmu       sync.Mutex
}

func (c *guardedConn) Read(p []byte) (int, error) {
	// pion only runs a TLS handshake with a deadline on a *tls.Conn it can see; this wrapper hides it.
	c.handshake.Do(func() {
		if tc, ok := c.Conn.(*tls.Conn); ok {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c.hsErr = tc.HandshakeContext(ctx)
		}
	})
	if c.hsErr != nil {
		return 0, c.hsErr
	}
	for len(c.pending) == 0 {
		// A connection that carries nothing (no allocation refresh, no consent check) is dropped.
		c.Conn.SetReadDeadline(time.Now().Add(c.idle))
		n, _, err := c.frames.ReadFrom(c.buf)
		if err != nil {
			return 0, err
		}
		frame := c.buf[:n]
		if c.g.intercept(frame, c.Conn.RemoteAddr(), c.transport, func(b []byte) error {
			_, err := c.Write(b)
			return err
		}) {
			continue
		}
		c.pending = frame
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// Close closes the connection and forgets it.
func (c *guardedConn) Close() error {
	c.ln.mu.Lock()
	delete(c.ln.conns, c)
	c.ln.mu.Unlock()
	return c.Conn.Close()
}

// Write keeps the guard's answers and pion's frames from interleaving on the stream.
func (c *guardedConn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.Conn.Write(b)
}

// addrPort returns a's IP and port, or false if a is not an IP address.
func addrPort(a net.Addr) (netip.AddrPort, bool) {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort(), true
	case *net.TCPAddr:
		return a.AddrPort(), true
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap, err == nil
}
