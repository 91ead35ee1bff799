package turn

import (
	"net"
	"net/netip"
	"testing"
)

func TestPeerFilterDeniesSpecialPurposeRanges(t *testing.T) {
	denied := []string{
		"127.0.0.1", "0.0.0.0", "::", "::1", "::ffff:127.0.0.1", "::ffff:0.0.0.0", "169.254.169.254",
		"10.1.2.3", "100.64.0.1", "192.168.1.1", "fc00::1", "fe80::1", "64:ff9b::7f00:1", "224.0.0.1",
		"172.16.0.1", "172.31.255.255", "198.18.0.1", "240.0.0.1", "255.255.255.255", "0.1.2.3",
		"::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:100.64.0.1", "64:ff9b::a9fe:a9fe",
		"64:ff9b::a00:1", "2002:7f00:1::1", "2002:a9fe:a9fe::", "::7f00:1", "ff02::1", "64:ff9b:1::1",
		"fd12:3456::1", "fe80::1%eth0",
	}
	var f PeerFilter
	for _, s := range denied {
		ip := parseIP(t, s)
		if err := f.Check(ip); err == nil {
			t.Errorf("%s: allowed, want refused", s)
		}
	}
	allowed := []string{"1.2.3.4", "8.8.8.8", "203.0.113.7", "2001:4860:4860::8888", "::ffff:1.2.3.4",
		"64:ff9b::808:808", "172.32.0.1", "100.128.0.1", "192.169.0.1"}
	for _, s := range allowed {
		if err := f.Check(parseIP(t, s)); err != nil {
			t.Errorf("%s: %v, want allowed", s, err)
		}
	}
}

func TestPeerFilterLoopbackOnlyWithTestingSwitch(t *testing.T) {
	f := PeerFilter{AllowLoopback: true}
	for _, s := range []string{"127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"} {
		if err := f.Check(parseIP(t, s)); err != nil {
			t.Errorf("%s with AllowLoopback: %v", s, err)
		}
	}
	// The switch is for loopback only: the unspecified address and private ranges stay refused.
	for _, s := range []string{"0.0.0.0", "::", "::ffff:0.0.0.0", "10.0.0.1", "169.254.169.254"} {
		if err := f.Check(parseIP(t, s)); err == nil {
			t.Errorf("%s with AllowLoopback: allowed, want refused", s)
		}
	}
}

func TestPeerFilterAllowList(t *testing.T) {
	f := PeerFilter{Allow: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")}}
	for _, s := range []string{"10.20.1.1", "::ffff:10.20.1.1", "64:ff9b::a14:101"} {
		if err := f.Check(parseIP(t, s)); err != nil {
			t.Errorf("%s in the allow list: %v", s, err)
		}
	}
	if err := f.Check(parseIP(t, "10.21.0.1")); err == nil {
		t.Error("10.21.0.1 outside the allow list: allowed")
	}
}

func TestForbiddenPeerErrorNamesTheRange(t *testing.T) {
	var f PeerFilter
	err := f.Check(net.ParseIP("169.254.169.254"))
	if err == nil || err.Error() != "peer 169.254.169.254 is in 169.254.0.0/16 (link-local (cloud metadata))" {
		t.Fatalf("got %v", err)
	}
	err = f.Check(net.ParseIP("::ffff:127.0.0.1"))
	if err == nil || err.Error() != "peer 127.0.0.1 is in 127.0.0.0/8 (loopback)" {
		t.Fatalf("got %v", err)
	}
}

func parseIP(t *testing.T, s string) net.IP {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatalf("parse %s: %v", s, err)
	}
	return net.IP(a.AsSlice())
}
