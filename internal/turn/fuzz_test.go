package turn

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// FuzzGuard feeds the guard what any stranger can send to the TURN port. It must never panic, and it
// may only answer a request it could authenticate, with 403 (a forbidden peer) or 442 (a TCP relay).
func FuzzGuard(f *testing.F) {
	cred := NewCredential(testSecret, "fuzz", time.Now().Add(time.Hour))
	for _, peer := range []string{"127.0.0.1", "1.2.3.4", "::ffff:10.0.0.1", "64:ff9b::7f00:1"} {
		for _, method := range []stun.Method{stun.MethodCreatePermission, stun.MethodChannelBind, stun.MethodConnect} {
			m := stun.MustBuild(stun.TransactionID, stun.NewType(method, stun.ClassRequest),
				peerAddress(netip.MustParseAddr(peer), 9), stun.NewUsername(cred.Username), stun.NewRealm(DefaultRealm),
				stun.NewNonce("n"), stun.NewLongTermIntegrity(cred.Username, DefaultRealm, cred.Password), stun.Fingerprint)
			f.Add(m.Raw)
		}
	}
	tcpAllocate := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		requestedTransport(transportTCP), stun.NewUsername(cred.Username), stun.NewRealm(DefaultRealm),
		stun.NewNonce("n"), stun.NewLongTermIntegrity(cred.Username, DefaultRealm, cred.Password), stun.Fingerprint)
	f.Add(tcpAllocate.Raw)
	f.Add([]byte{0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4}) // ChannelData
	s := &Server{secret: testSecret, filter: &PeerFilter{}, log: testLogger()}
	s.metrics, _ = newMetrics(s, nil)
	g := &guard{s: s}
	src := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 9), Port: 5000}
	f.Fuzz(func(t *testing.T, b []byte) {
		var answer []byte
		handled := g.intercept(b, src, "udp", func(r []byte) error { answer = r; return nil })
		if !handled {
			if answer != nil {
				t.Fatal("answered a request it passed on")
			}
			return
		}
		m := &stun.Message{Raw: answer}
		var code stun.ErrorCodeAttribute
		if err := m.Decode(); err != nil || code.GetFrom(m) != nil ||
			(code.Code != stun.CodeForbidden && code.Code != stun.CodeUnsupportedTransProto) {
			t.Fatalf("handled, but the answer is neither 403 nor 442: %v %v", code.Code, err)
		}
	})
}
