package monitoring

import (
	"net/netip"
	"testing"
	"time"
)

// TestEnrollThrottle checks that one address's failures block it and not another, that an IPv6 /64
// counts as one address, and that the remembered addresses stay bounded.
func TestEnrollThrottle(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	th := newEnrollThrottle()
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for range EnrollFailureBurst {
		if err := th.check(a, now); err != nil {
			t.Fatalf("blocked before the burst: %v", err)
		}
		th.fail(a, now)
	}
	if th.check(a, now) != errEnrollBusyAddress {
		t.Fatal("address not blocked after its burst")
	}
	if err := th.check(b, now); err != nil {
		t.Fatalf("another address blocked: %v", err)
	}
	if th.check(a, now.Add(EnrollFailureEvery)) != nil {
		t.Fatal("address still blocked after its allowance refilled")
	}

	v6 := newEnrollThrottle()
	for i := range EnrollFailureBurst {
		v6.fail(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)}), now)
	}
	if v6.check(netip.MustParseAddr("2001:db8::ffff"), now) != errEnrollBusyAddress {
		t.Fatal("an IPv6 /64 should count as one address")
	}

	many := newEnrollThrottle()
	for i := range maxEnrollAddresses + 500 {
		many.fail(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), now)
	}
	if n := len(many.byAddr); n > maxEnrollAddresses {
		t.Fatalf("%d addresses remembered, want at most %d", n, maxEnrollAddresses)
	}
	if many.check(b, now) != errEnrollBusyServer {
		t.Fatal("the server-wide allowance should be spent by so many failures")
	}
}
