package turn

import (
	"errors"
	"net"
	"net/netip"
	"sync/atomic"

	pionturn "github.com/pion/turn/v5"

	"github.com/telemed/telemed/internal/turn/udpbatch"
)

// relayGenerator opens relay sockets in the configured port range and wraps them to count what they
// carry and to keep the relay off this server's own services.
type relayGenerator struct {
	*pionturn.RelayAddressGeneratorPortRange
	s *Server
}

func (r *relayGenerator) AllocatePacketConn(c pionturn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	conn, addr, err := r.RelayAddressGeneratorPortRange.AllocatePacketConn(c)
	if err != nil {
		r.s.log.Warn("turn: cannot open a relay socket", "user", c.UserID, "err", err)
		return nil, nil, err
	}
	udpbatch.SetBuffers(conn)
	return &relayConn{PacketConn: udpbatch.New(conn, relayBatch, false), s: r.s}, addr, nil
}

// errNoTCPRelays: the guard refuses TCP allocations before pion asks for one; this is the second line.
var errNoTCPRelays = errors.New("turn: TCP relays (RFC 6062) are not offered")

// AllocateListener refuses: telemed relays UDP only.
func (r *relayGenerator) AllocateListener(pionturn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	return nil, nil, errNoTCPRelays
}

// AllocateConn refuses: telemed relays UDP only.
func (r *relayGenerator) AllocateConn(pionturn.AllocateConnConfig) (net.Conn, error) {
	return nil, errNoTCPRelays
}

// relayConn is one allocation's relay socket.
type relayConn struct {
	net.PacketConn
	s *Server
}

// ReadFrom counts what peers send towards the client.
func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(p)
	if err == nil {
		c.s.stats.toClientPackets.Add(1)
		c.s.stats.toClientBytes.Add(uint64(n))
	}
	return n, addr, err
}

// WriteTo counts what the client sends to peers, and drops what would reach this server's own
// listeners: permissions are per IP address, so a permission for the server's public address (which
// two relayed candidates need) would otherwise open its TURN, HTTP and every other port too.
func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if ap, ok := addrPort(addr); ok && c.s.ownService(ap) {
		c.s.refuse(reasonOwnPort, "refused relay to one of this server's own ports", "peer", ap.String())
		return len(p), nil // as lost on the way; an error would end the allocation
	}
	n, err := c.PacketConn.WriteTo(p, addr)
	if err == nil {
		c.s.stats.toPeerPackets.Add(1)
		c.s.stats.toPeerBytes.Add(uint64(n))
	}
	return n, err
}

// ownService reports whether ap is this server's public address at a port outside the relay range.
func (s *Server) ownService(ap netip.AddrPort) bool {
	a := ap.Addr().Unmap()
	if a != s.relayIP {
		return false
	}
	p := ap.Port()
	return p < s.opts.MinPort || p > s.opts.MaxPort
}

// stats are the relay's counters, read by the metrics.
type stats struct {
	allocations                    atomic.Int64
	toPeerPackets, toPeerBytes     atomic.Uint64
	toClientPackets, toClientBytes atomic.Uint64
}
