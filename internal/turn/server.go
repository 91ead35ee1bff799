// Package turn is telemed's embedded STUN/TURN server: pion/turn behind telemed's rules. It accepts
// time-limited TURN REST credentials (the form coturn's use-auth-secret accepts), checks a credential's
// expiry when an allocation is created and not on its refreshes (so a long consultation keeps its relay),
// refuses to relay to special-purpose address ranges on every listener, caps allocations per user, and
// counts what it relays and refuses.
package turn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/transport/v5/reuseport"
	pionturn "github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/telemed/telemed/internal/turn/udpbatch"
)

// Defaults.
const (
	DefaultRealm     = "telemed"
	DefaultUserQuota = 10
	DefaultMinPort   = 49152
	DefaultMaxPort   = 65535
)

// Options configure a Server. Zero values take the documented defaults.
type Options struct {
	// Addr is the UDP and TCP address to listen on, host:port. Port 0 picks a free port (tests).
	// An unspecified host (0.0.0.0 or ::) listens on each of the machine's addresses of that family
	// separately, as coturn does: a socket bound to the wildcard answers from whichever address the
	// routing table prefers, and a client behind NAT drops an answer from an address it did not ask.
	Addr string
	// TLSAddr, with TLSConfig, adds a TURN-over-TLS listener. Port 0 picks a free port.
	TLSAddr   string
	TLSConfig *tls.Config
	// RelayIP is the address relayed candidates carry: the server's public IP. Required.
	RelayIP netip.Addr
	// RelayBind is the local address relay sockets bind to. Default: RelayIP when it is one of this
	// machine's addresses (so relayed packets leave from the address candidates carry), else Addr's host.
	RelayBind string
	// MinPort and MaxPort bound the relay ports. Default 49152-65535.
	MinPort, MaxPort uint16
	// Secret is the TURN REST shared secret. Required.
	Secret []byte
	// Realm is the STUN realm. Default "telemed".
	Realm string
	// Filter decides which peers may be relayed to. The zero value is the safe default.
	Filter PeerFilter
	// UserQuota caps one user's active allocations. Default 10; negative means no cap.
	UserQuota int
	// AllocationLifetime is the lifetime granted when a client does not ask for one. Default
	// 10 minutes (pion's default). Tests shorten it to see refreshes happen.
	AllocationLifetime time.Duration
	// UDPSockets is how many UDP sockets share the port (SO_REUSEPORT), each served by its own
	// goroutine. Default: GOMAXPROCS.
	UDPSockets int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives refusals and lifecycle lines. Default slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics. Nil: none registered.
	Registerer prometheus.Registerer
}

// Datagrams read per system call: on a listener, which every client of the socket shares, and on a
// relay socket, which one allocation owns (each slot costs 1.6 KiB).
const (
	listenerBatch = 32
	relayBatch    = 4
)

// Errors from Start.
var (
	ErrNoSecret  = errors.New("turn: a shared secret is required")
	ErrNoRelayIP = errors.New("turn: a relay IP address is required")
)

// Server is a running STUN/TURN server.
type Server struct {
	opts    Options
	log     *slog.Logger
	secret  []byte
	filter  *PeerFilter
	relayIP netip.Addr
	pion    *pionturn.Server
	metrics *metrics
	stats   stats

	udpAddr, tcpAddr, tlsAddr net.Addr

	mu    sync.Mutex
	users map[string]int // active allocations per user
}

// Start listens and serves until Close.
func Start(o Options) (*Server, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{opts: o, log: o.Logger, secret: o.Secret, filter: &o.Filter, relayIP: o.RelayIP.Unmap(),
		users: map[string]int{}}
	if s.metrics, err = newMetrics(s, o.Registerer); err != nil {
		return nil, fmt.Errorf("turn: metrics: %w", err)
	}
	l, err := openListeners(o)
	if err != nil {
		return nil, err
	}
	s.udpAddr, s.tcpAddr = l.udp[0].LocalAddr(), l.tcp[0].Addr()
	if l.tls != nil {
		s.tlsAddr = l.tls.Addr()
	}
	s.pion, err = pionturn.NewServer(s.pionConfig(l))
	if err != nil {
		l.close()
		return nil, fmt.Errorf("turn: %w", err)
	}
	return s, nil
}

// withDefaults checks o and fills in what is left to its default.
func (o Options) withDefaults() (Options, error) {
	if len(o.Secret) == 0 {
		return o, ErrNoSecret
	}
	if !o.RelayIP.IsValid() {
		return o, ErrNoRelayIP
	}
	if o.Realm == "" {
		o.Realm = DefaultRealm
	}
	if o.UserQuota == 0 {
		o.UserQuota = DefaultUserQuota
	}
	if o.MinPort == 0 && o.MaxPort == 0 {
		o.MinPort, o.MaxPort = DefaultMinPort, DefaultMaxPort
	}
	if o.MinPort == 0 || o.MaxPort < o.MinPort {
		return o, fmt.Errorf("turn: relay ports %d-%d: want MIN-MAX with 0 < MIN <= MAX", o.MinPort, o.MaxPort)
	}
	if o.UDPSockets <= 0 {
		o.UDPSockets = runtime.GOMAXPROCS(0)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	host, _, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return o, fmt.Errorf("turn: address %q: %w", o.Addr, err)
	}
	if o.RelayBind == "" {
		o.RelayBind = host
		if isLocal(o.RelayIP) {
			o.RelayBind = o.RelayIP.Unmap().String()
		}
		if o.RelayBind == "" {
			o.RelayBind = "0.0.0.0"
		}
	}
	return o, nil
}

// listeners are the sockets the relay serves clients on.
type listeners struct {
	udp []net.PacketConn
	tcp []net.Listener
	tls net.Listener // nil without TURN over TLS
}

// openListeners listens on every address of o.Addr, UDP and TCP on one port, and on o.TLSAddr.
func openListeners(o Options) (*listeners, error) {
	l := &listeners{}
	port := ""
	for _, addr := range listenAddrs(o.Addr) {
		if port != "" {
			// With port 0, every address takes the port the first one got.
			h, _, _ := net.SplitHostPort(addr)
			addr = net.JoinHostPort(h, port)
		}
		u, t, err := listenPair(addr, o.UDPSockets)
		if err != nil {
			l.close()
			return nil, fmt.Errorf("turn: listen on %s: %w", addr, err)
		}
		l.udp, l.tcp = append(l.udp, u...), append(l.tcp, t)
		port = strconv.Itoa(Port(t.Addr()))
	}
	if o.TLSConfig != nil {
		ln, err := net.Listen("tcp", o.TLSAddr)
		if err != nil {
			l.close()
			return nil, fmt.Errorf("turn: listen on %s (TLS): %w", o.TLSAddr, err)
		}
		l.tls = tls.NewListener(ln, o.TLSConfig)
	}
	return l, nil
}

func (l *listeners) close() {
	closeAll(l.udp, nil)
	for _, t := range l.tcp {
		t.Close()
	}
	if l.tls != nil {
		l.tls.Close()
	}
}

// pionConfig is pion/turn's configuration for the relay on l: every socket behind the guard, our
// authentication, quota, peer filter and relay port range.
func (s *Server) pionConfig(l *listeners) pionturn.ServerConfig {
	o := s.opts
	g := &guard{s: s}
	relay := func() *relayGenerator {
		return &relayGenerator{s: s, RelayAddressGeneratorPortRange: &pionturn.RelayAddressGeneratorPortRange{
			RelayAddress: net.IP(s.relayIP.AsSlice()), Address: o.RelayBind, MinPort: o.MinPort, MaxPort: o.MaxPort,
		}}
	}
	permit := func(client net.Addr, peer net.IP) bool { return s.filter.Check(peer) == nil }
	cfg := pionturn.ServerConfig{
		LoggerFactory:      pionLogger{log: s.log},
		Realm:              o.Realm,
		AuthHandler:        s.authenticate,
		QuotaHandler:       s.withinQuota,
		EventHandler:       s.events(),
		AllocationLifetime: o.AllocationLifetime,
	}
	for _, c := range l.udp {
		cfg.PacketConnConfigs = append(cfg.PacketConnConfigs, pionturn.PacketConnConfig{
			PacketConn: &guardedPacketConn{PacketConn: udpbatch.New(c, listenerBatch, true), g: g}, RelayAddressGenerator: relay(), PermissionHandler: permit})
	}
	idle := o.AllocationLifetime
	if idle == 0 {
		idle = 10 * time.Minute
	}
	idle += time.Minute
	tcp := l.tcp
	if l.tls != nil {
		tcp = append(slices.Clone(tcp), l.tls)
	}
	for _, t := range tcp {
		transport := "tcp"
		if t == l.tls {
			transport = "tls"
		}
		cfg.ListenerConfigs = append(cfg.ListenerConfigs, pionturn.ListenerConfig{
			Listener: &guardedListener{Listener: t, g: g, transport: transport, idle: idle}, RelayAddressGenerator: relay(), PermissionHandler: permit})
	}
	return cfg
}

// listenAddrs expands an unspecified host into one address per local IP address of its family.
func listenAddrs(addr string) []string {
	host, port, _ := net.SplitHostPort(addr)
	wild, err := netip.ParseAddr(host)
	if host != "" && (err != nil || !wild.IsUnspecified()) {
		return []string{addr}
	}
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return []string{addr}
	}
	var out []string
	for _, ia := range ifaddrs {
		pfx, err := netip.ParsePrefix(ia.String())
		if err != nil {
			continue
		}
		a := pfx.Addr()
		if a.Is4() != (host == "" || wild.Is4()) || a.IsLinkLocalUnicast() || a.IsMulticast() {
			continue
		}
		out = append(out, net.JoinHostPort(a.String(), port))
	}
	if len(out) == 0 {
		return []string{addr}
	}
	return out
}

// isLocal reports whether a is one of this machine's addresses.
func isLocal(a netip.Addr) bool {
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, ia := range ifaddrs {
		if pfx, err := netip.ParsePrefix(ia.String()); err == nil && pfx.Addr() == a.Unmap() {
			return true
		}
	}
	return false
}

// listenPair opens n UDP sockets sharing one port and a TCP listener on the same port. With port 0
// it retries until it finds a port free for both.
func listenPair(addr string, n int) ([]net.PacketConn, net.Listener, error) {
	lc := net.ListenConfig{Control: reuseport.Control}
	var lastErr error
	for try := 0; try < 10; try++ {
		first, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			return nil, nil, err
		}
		udpbatch.SetBuffers(first)
		conns := []net.PacketConn{first}
		bound := first.LocalAddr().String()
		for len(conns) < n {
			c, err := lc.ListenPacket(context.Background(), "udp", bound)
			if err != nil {
				closeAll(conns, nil)
				return nil, nil, err
			}
			udpbatch.SetBuffers(c)
			conns = append(conns, c)
		}
		tcp, err := net.Listen("tcp", bound)
		if err == nil {
			return conns, tcp, nil
		}
		closeAll(conns, nil)
		lastErr = err
		if _, port, _ := net.SplitHostPort(addr); port != "0" {
			break
		}
	}
	return nil, nil, lastErr
}

func closeAll(conns []net.PacketConn, ln net.Listener) {
	for _, c := range conns {
		c.Close()
	}
	if ln != nil {
		ln.Close()
	}
}

// Close stops the listeners and ends every allocation.
func (s *Server) Close() error { return s.pion.Close() }

// UDPAddr is the (first) UDP address the server listens on.
func (s *Server) UDPAddr() net.Addr { return s.udpAddr }

// TCPAddr is the (first) TCP listener's address.
func (s *Server) TCPAddr() net.Addr { return s.tcpAddr }

// TLSAddr is the TLS listener's address, or nil.
func (s *Server) TLSAddr() net.Addr { return s.tlsAddr }

// RelayIP is the address relayed candidates carry.
func (s *Server) RelayIP() netip.Addr { return s.relayIP }

// Allocations is the number of active allocations.
func (s *Server) Allocations() int { return int(s.stats.allocations.Load()) }

// authenticate checks a TURN REST credential. Its expiry counts only for Allocate: refreshes,
// permissions and channel bindings of an allocation made in time go on after the credential expires,
// as coturn does, so a consultation longer than the credential's lifetime keeps its relay.
func (s *Server) authenticate(ra *pionturn.RequestAttributes) (string, []byte, bool) {
	expires, user, err := ParseUsername(ra.Username)
	if err != nil {
		s.refuse(reasonBadCredential, "refused a malformed TURN username", "client", ra.SrcAddr.String(), "err", err)
		return "", nil, false
	}
	if ra.Realm != s.opts.Realm {
		// A credential is for this relay's realm only: a client naming another realm is not one
		// of ours, whatever its username says.
		s.refuse(reasonBadCredential, "refused a TURN request in another realm", "user", user,
			"client", ra.SrcAddr.String(), "realm", ra.Realm)
		return "", nil, false
	}
	if ra.Method == stun.MethodAllocate && s.opts.Now().After(expires) {
		s.refuse(reasonExpired, "refused an expired TURN credential", "user", user, "client", ra.SrcAddr.String(),
			"expired", expires.UTC().Format(time.RFC3339))
		return "", nil, false
	}
	return user, pionturn.GenerateAuthKey(ra.Username, ra.Realm, restPassword(s.secret, ra.Username)), true
}

func (s *Server) withinQuota(user, _ string, src net.Addr) bool {
	if s.opts.UserQuota < 0 {
		return true
	}
	s.mu.Lock()
	n := s.users[user]
	s.mu.Unlock()
	if n >= s.opts.UserQuota {
		s.refuse(reasonQuota, "refused an allocation over the user's quota", "user", user, "client", src.String(),
			"allocations", n, "quota", s.opts.UserQuota)
		return false
	}
	return true
}

func (s *Server) events() pionturn.EventHandler {
	return pionturn.EventHandler{
		OnAuth: func(src, _ net.Addr, proto, username, _, method string, ok bool) {
			if !ok {
				s.refuse(reasonBadCredential, "refused a TURN request with a wrong password", "username", username,
					"client", src.String(), "transport", proto, "method", method)
			}
		},
		OnAllocationCreated: func(src, _ net.Addr, proto, user, _ string, relay net.Addr, _ int) {
			s.stats.allocations.Add(1)
			s.mu.Lock()
			s.users[user]++
			s.mu.Unlock()
			s.log.Debug("turn: allocation created", "user", user, "client", src.String(), "transport", proto, "relay", relay.String())
		},
		OnAllocationDeleted: func(src, _ net.Addr, proto, user, _ string) {
			s.stats.allocations.Add(-1)
			s.mu.Lock()
			if s.users[user]--; s.users[user] <= 0 {
				delete(s.users, user)
			}
			s.mu.Unlock()
			s.log.Debug("turn: allocation ended", "user", user, "client", src.String(), "transport", proto)
		},
	}
}

// refuse logs a refusal and counts it.
func (s *Server) refuse(reason, msg string, args ...any) {
	s.metrics.refusals.WithLabelValues(reason).Inc()
	s.log.Warn("turn: "+msg, append([]any{"reason", reason}, args...)...)
}

// Port is the port of addr, or 0.
func Port(addr net.Addr) int {
	if addr == nil {
		return 0
	}
	_, p, _ := net.SplitHostPort(addr.String())
	n, _ := strconv.Atoi(p)
	return n
}
