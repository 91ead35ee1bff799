package turn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var testSecret = []byte("test-secret")

func testLogger() *slog.Logger {
	if os.Getenv("TELEMED_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func startTestServer(t *testing.T, o Options) (*Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	o.Addr = "127.0.0.1:0"
	o.RelayIP = netip.MustParseAddr("127.0.0.1")
	o.Secret = testSecret
	o.Logger = testLogger()
	o.Registerer = reg
	if o.TLSConfig == nil {
		o.TLSConfig = selfSignedTLS(t)
		o.TLSAddr = "127.0.0.1:0"
	}
	s, err := Start(o)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, reg
}

// stunClient speaks raw STUN to the server (pion/stun encodes), so a test sees every response code.
type stunClient struct {
	t        *testing.T
	conn     net.Conn
	stream   bool
	username string
	password string
	realm    string
	nonce    string
	// otherRealm, when set, is named in requests instead of the realm the server gave.
	otherRealm string
}

func dial(t *testing.T, s *Server, transport string) *stunClient {
	t.Helper()
	var c net.Conn
	var err error
	switch transport {
	case "udp":
		c, err = net.Dial("udp", s.UDPAddr().String())
	case "tcp":
		c, err = net.Dial("tcp", s.TCPAddr().String())
	case "tls":
		c, err = tls.Dial("tcp", s.TLSAddr().String(), &tls.Config{InsecureSkipVerify: true})
	}
	if err != nil {
		t.Fatalf("dial %s: %v", transport, err)
	}
	t.Cleanup(func() { c.Close() })
	return &stunClient{t: t, conn: c, stream: transport != "udp"}
}

func (c *stunClient) withCredential(cr Credential) *stunClient {
	c.username, c.password = cr.Username, cr.Password
	return c
}

// do sends a request built from setters, authenticating as the long-term mechanism does (first try
// unauthenticated to learn realm and nonce), and returns the response.
func (c *stunClient) do(method stun.Method, setters ...stun.Setter) *stun.Message {
	c.t.Helper()
	for attempt := 0; attempt < 3; attempt++ {
		all := append([]stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}, setters...)
		if c.nonce != "" {
			realm := c.realm
			if c.otherRealm != "" {
				realm = c.otherRealm
			}
			all = append(all, stun.NewUsername(c.username), stun.NewRealm(realm), stun.NewNonce(c.nonce),
				stun.NewLongTermIntegrity(c.username, realm, c.password))
		}
		all = append(all, stun.Fingerprint)
		req, err := stun.Build(all...)
		if err != nil {
			c.t.Fatalf("build %s: %v", method, err)
		}
		res := c.roundTrip(req)
		var code stun.ErrorCodeAttribute
		if res.Type.Class == stun.ClassErrorResponse && code.GetFrom(res) == nil &&
			(code.Code == stun.CodeUnauthorized || code.Code == stun.CodeStaleNonce) && (c.nonce == "" || code.Code == stun.CodeStaleNonce) {
			var realm stun.Realm
			var nonce stun.Nonce
			if realm.GetFrom(res) == nil && nonce.GetFrom(res) == nil {
				c.realm, c.nonce = realm.String(), nonce.String()
				continue
			}
		}
		return res
	}
	c.t.Fatalf("%s: no answer after 3 tries", method)
	return nil
}

func (c *stunClient) roundTrip(req *stun.Message) *stun.Message {
	c.t.Helper()
	c.conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.conn.Write(req.Raw); err != nil {
		c.t.Fatalf("write: %v", err)
	}
	buf := make([]byte, 2048)
	var n int
	var err error
	if c.stream {
		if _, err = io.ReadFull(c.conn, buf[:20]); err == nil {
			l := int(binary.BigEndian.Uint16(buf[2:4]))
			_, err = io.ReadFull(c.conn, buf[20:20+l])
			n = 20 + l
		}
	} else {
		n, err = c.conn.Read(buf)
	}
	if err != nil {
		c.t.Fatalf("read response to %s: %v", req.Type, err)
	}
	res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
	if err := res.Decode(); err != nil {
		c.t.Fatalf("decode response: %v", err)
	}
	if res.TransactionID != req.TransactionID {
		c.t.Fatalf("response to another transaction")
	}
	return res
}

// errorCode is the response's error code, or 0 for success.
func errorCode(m *stun.Message) int {
	if m.Type.Class == stun.ClassSuccessResponse {
		return 0
	}
	var code stun.ErrorCodeAttribute
	if err := code.GetFrom(m); err != nil {
		return -1
	}
	return int(code.Code)
}

const (
	transportUDP = 17
	transportTCP = 6
)

func requestedTransport(proto byte) stun.Setter {
	return stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{proto, 0, 0, 0}}
}

func peerAddress(ip netip.Addr, port int) stun.Setter {
	return setterFunc(func(m *stun.Message) error {
		return (&stun.XORMappedAddress{IP: net.IP(ip.AsSlice()), Port: port}).AddToAs(m, stun.AttrXORPeerAddress)
	})
}

func channelNumber(n uint16) stun.Setter {
	return stun.RawAttribute{Type: stun.AttrChannelNumber, Value: []byte{byte(n >> 8), byte(n), 0, 0}}
}

type setterFunc func(*stun.Message) error

func (f setterFunc) AddTo(m *stun.Message) error { return f(m) }

func (c *stunClient) allocate(proto byte) {
	c.t.Helper()
	res := c.do(stun.MethodAllocate, requestedTransport(proto))
	if code := errorCode(res); code != 0 {
		c.t.Fatalf("allocate: error %d", code)
	}
}

// The addresses the issue lists, which a relay must never be turned against.
var forbiddenPeers = []string{
	"127.0.0.1", "0.0.0.0", "::", "::1", "::ffff:127.0.0.1", "::ffff:0.0.0.0", "169.254.169.254",
	"10.1.2.3", "100.64.0.1", "192.168.1.1", "fc00::1", "fe80::1", "64:ff9b::7f00:1", "224.0.0.1",
}

func TestForbiddenPeersRefusedWith403(t *testing.T) {
	s, _ := startTestServer(t, Options{})
	cred := NewCredential(testSecret, "patient-1", time.Now().Add(time.Hour))
	refused := 0
	for _, transport := range []string{"udp", "tcp", "tls"} {
		for _, method := range []string{"CreatePermission", "ChannelBind"} {
			t.Run(transport+"/"+method, func(t *testing.T) {
				c := dial(t, s, transport).withCredential(cred)
				c.allocate(transportUDP)
				for i, peer := range forbiddenPeers {
					res := c.request(method, netip.MustParseAddr(peer), uint16(0x4000+i))
					if code := errorCode(res); code != 403 {
						t.Errorf("%s %s: got %d, want 403", method, peer, code)
					}
					refused++
				}
				// A public address is fine, on the same allocation after all those refusals.
				if code := errorCode(c.request(method, netip.MustParseAddr("1.2.3.4"), 0x4fff)); code != 0 {
					t.Errorf("%s 1.2.3.4: got %d, want success", method, code)
				}
			})
		}
	}
	if got := testutil.ToFloat64(s.metrics.refusals.WithLabelValues(reasonForbiddenPeer)); int(got) != refused {
		t.Errorf("refusals metric: %v, want %d", got, refused)
	}
}

// TestTCPRelaysRefused: RFC 6062 TCP allocations are refused with 442, so no relayed TCP connection
// (which the per-IP permission and own-port rules do not cover) is ever made.
func TestTCPRelaysRefused(t *testing.T) {
	s, _ := startTestServer(t, Options{Filter: PeerFilter{AllowLoopback: true}})
	cred := NewCredential(testSecret, "patient-1", time.Now().Add(time.Hour))
	for _, transport := range []string{"udp", "tcp", "tls"} {
		c := dial(t, s, transport).withCredential(cred)
		if code := errorCode(c.do(stun.MethodAllocate, requestedTransport(transportTCP))); code != 442 {
			t.Errorf("%s: TCP allocation got %d, want 442 (Unsupported Transport Protocol)", transport, code)
		}
	}
	if got := testutil.ToFloat64(s.metrics.refusals.WithLabelValues(reasonTCPRelay)); got != 3 {
		t.Errorf("tcp_relay refusals: %v, want 3", got)
	}
	if s.Allocations() != 0 {
		t.Errorf("%d allocations, want none", s.Allocations())
	}
}

// TestCloseEndsTCPConnections: pion's Close closes listeners only; the server's Close also ends the
// TCP and TLS connections they accepted, with their allocations.
func TestCloseEndsTCPConnections(t *testing.T) {
	s, err := Start(Options{Addr: "127.0.0.1:0", RelayIP: netip.MustParseAddr("127.0.0.1"), Secret: testSecret,
		Logger: testLogger(), TLSConfig: selfSignedTLS(t), TLSAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	cred := NewCredential(testSecret, "p", time.Now().Add(time.Hour))
	var clients []*stunClient
	for _, transport := range []string{"tcp", "tls"} {
		c := dial(t, s, transport).withCredential(cred)
		c.allocate(transportUDP)
		clients = append(clients, c)
	}
	s.Close()
	for i, c := range clients {
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.conn.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("connection %d still open after Close: %v", i, err)
		}
	}
}

func TestLoopbackPeersOnlyWithTestingSwitch(t *testing.T) {
	s, _ := startTestServer(t, Options{Filter: PeerFilter{AllowLoopback: true}})
	cred := NewCredential(testSecret, "patient-1", time.Now().Add(time.Hour))
	for _, transport := range []string{"udp", "tcp"} {
		c := dial(t, s, transport).withCredential(cred)
		c.allocate(transportUDP)
		for i, peer := range []string{"127.0.0.1", "::ffff:127.0.0.1"} {
			for _, method := range []string{"CreatePermission", "ChannelBind"} {
				if code := errorCode(c.request(method, netip.MustParseAddr(peer), uint16(0x4000+i))); code != 0 {
					t.Errorf("%s %s %s with loopback allowed: got %d, want success", transport, method, peer, code)
				}
			}
		}
		// Everything else stays refused.
		for i, peer := range []string{"0.0.0.0", "10.1.2.3", "169.254.169.254"} {
			if code := errorCode(c.request("ChannelBind", netip.MustParseAddr(peer), uint16(0x4100+i))); code != 403 {
				t.Errorf("%s ChannelBind %s with loopback allowed: got %d, want 403", transport, peer, code)
			}
		}
	}
}

func (c *stunClient) request(method string, peer netip.Addr, channel uint16) *stun.Message {
	c.t.Helper()
	port := 1000 + int(channel&0xfff) // a channel binds one peer address: one port per channel
	switch method {
	case "CreatePermission":
		return c.do(stun.MethodCreatePermission, peerAddress(peer, port))
	case "ChannelBind":
		return c.do(stun.MethodChannelBind, channelNumber(channel), peerAddress(peer, port))
	case "Connect":
		return c.do(stun.MethodConnect, peerAddress(peer, port))
	}
	c.t.Fatalf("unknown method %s", method)
	return nil
}

func TestCredentials(t *testing.T) {
	now := time.Now()
	s, _ := startTestServer(t, Options{UserQuota: 2})
	for _, tc := range []struct {
		name string
		cred Credential
		want int
	}{
		{"valid", NewCredential(testSecret, "p1", now.Add(time.Hour)), 0},
		{"expired", NewCredential(testSecret, "p2", now.Add(-time.Second)), 401},
		{"wrong secret", NewCredential([]byte("other"), "p3", now.Add(time.Hour)), 401},
		{"not the REST form", Credential{Username: "alice", Password: "x"}, 401},
		{"another realm", NewCredential(testSecret, "p4", now.Add(time.Hour)), 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, s, "udp").withCredential(tc.cred)
			if tc.name == "another realm" {
				c.otherRealm = "example.org"
			}
			if got := errorCode(c.do(stun.MethodAllocate, requestedTransport(transportUDP))); got != tc.want {
				t.Fatalf("allocate: got %d, want %d", got, tc.want)
			}
		})
	}
	for reason, want := range map[string]float64{reasonExpired: 1, reasonBadCredential: 3} {
		if got := testutil.ToFloat64(s.metrics.refusals.WithLabelValues(reason)); got != want {
			t.Errorf("refusals{reason=%s} = %v, want %v", reason, got, want)
		}
	}
}

func TestExpiredCredentialStillRefreshesItsAllocation(t *testing.T) {
	now := time.Now()
	var offset atomic.Int64 // how far the test has moved the server's clock
	s, _ := startTestServer(t, Options{Now: func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }})
	c := dial(t, s, "udp").withCredential(NewCredential(testSecret, "p1", now.Add(time.Minute)))
	c.allocate(transportUDP)
	offset.Store(int64(time.Hour)) // the credential is long expired
	now = now.Add(time.Hour)
	for _, step := range []struct {
		method stun.Method
		attrs  []stun.Setter
	}{
		{stun.MethodRefresh, []stun.Setter{stun.RawAttribute{Type: stun.AttrLifetime, Value: []byte{0, 0, 2, 88}}}},
		{stun.MethodCreatePermission, []stun.Setter{peerAddress(netip.MustParseAddr("1.2.3.4"), 9)}},
		{stun.MethodChannelBind, []stun.Setter{channelNumber(0x4001), peerAddress(netip.MustParseAddr("1.2.3.4"), 9)}},
	} {
		if code := errorCode(c.do(step.method, step.attrs...)); code != 0 {
			t.Errorf("%s after expiry: got %d, want success", step.method, code)
		}
	}
	// But a new allocation with it is refused.
	c2 := dial(t, s, "udp").withCredential(NewCredential(testSecret, "p1", now.Add(-59*time.Minute)))
	if code := errorCode(c2.do(stun.MethodAllocate, requestedTransport(transportUDP))); code != 401 {
		t.Errorf("new allocation with an expired credential: got %d, want 401", code)
	}
}

func TestUserQuota(t *testing.T) {
	s, _ := startTestServer(t, Options{UserQuota: 2})
	cred := NewCredential(testSecret, "p1", time.Now().Add(time.Hour))
	for i := 0; i < 2; i++ {
		dial(t, s, "udp").withCredential(cred).allocate(transportUDP)
	}
	if code := errorCode(dial(t, s, "udp").withCredential(cred).do(stun.MethodAllocate, requestedTransport(transportUDP))); code != 486 {
		t.Fatalf("third allocation: got %d, want 486 (Allocation Quota Reached)", code)
	}
	// Another user is not affected.
	dial(t, s, "tcp").withCredential(NewCredential(testSecret, "p2", time.Now().Add(time.Hour))).allocate(transportUDP)
	if s.Allocations() != 3 {
		t.Fatalf("allocations: %d, want 3", s.Allocations())
	}
	if got := testutil.ToFloat64(s.metrics.refusals.WithLabelValues(reasonQuota)); got != 1 {
		t.Errorf("quota refusals: %v", got)
	}
}

func TestMetricsNames(t *testing.T) {
	_, reg := startTestServer(t, Options{})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	got := strings.Join(names, " ")
	for _, want := range []string{"telemed_turn_allocations", "telemed_turn_relayed_bytes_total",
		"telemed_turn_relayed_packets_total", "telemed_turn_refusals_total"} {
		if !strings.Contains(got, want) {
			t.Errorf("metric %s missing from %s", want, got)
		}
	}
}

func selfSignedTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// TestWildcardListensOnEachAddress: with 0.0.0.0 the server binds each local IPv4 address by itself,
// so that it answers from the address a client asked (see Options.Addr), here 127.0.0.1.
func TestWildcardListensOnEachAddress(t *testing.T) {
	s, err := Start(Options{Addr: "0.0.0.0:0", RelayIP: netip.MustParseAddr("127.0.0.1"), Secret: testSecret, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	port := Port(s.UDPAddr())
	for _, network := range []string{"udp", "tcp"} {
		c, err := net.Dial(network, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("%s: %v", network, err)
		}
		sc := &stunClient{t: t, conn: c, stream: network == "tcp"}
		res := sc.roundTrip(stun.MustBuild(stun.TransactionID, stun.BindingRequest))
		var xor stun.XORMappedAddress
		if err := xor.GetFrom(res); err != nil || !xor.IP.Equal(net.ParseIP("127.0.0.1")) {
			t.Fatalf("%s binding: %v %v", network, xor, err)
		}
		if network == "udp" && c.LocalAddr().String() == "" {
			t.Fatal("no local address")
		}
		c.Close()
	}
	if host, _, _ := net.SplitHostPort(s.UDPAddr().String()); host == "0.0.0.0" {
		t.Fatalf("listening on %s, want each address", s.UDPAddr())
	}
}
