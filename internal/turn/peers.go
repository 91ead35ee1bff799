package turn

import (
	"fmt"
	"net"
	"net/netip"
)

// PeerFilter decides which peers the relay may send to. The zero value is safe: it refuses every IANA
// special-purpose range a relay could be turned against (loopback, private networks, link-local with
// the cloud metadata service, carrier-grade NAT, multicast, reserved), in every form an attacker can
// write them (IPv4-mapped IPv6, NAT64, 6to4).
type PeerFilter struct {
	// Allow lists ranges the operator wants relayed to despite the deny list (a clinic's own network
	// behind the server, say). Empty by default.
	Allow []netip.Prefix
	// AllowLoopback lets the relay send to 127.0.0.0/8 and ::1. For tests on one machine only.
	AllowLoopback bool
}

// deniedRange is one range the relay refuses, with the name a log line gives it.
type deniedRange struct {
	prefix netip.Prefix
	name   string
}

// deniedRanges is the default deny list. IPv4-mapped addresses are unmapped before the check, and the
// IPv4 address inside a NAT64 or 6to4 address is checked too, so these cover those forms.
var deniedRanges = func() []deniedRange {
	list := []struct{ cidr, name string }{
		{"0.0.0.0/8", "this network"},
		{"10.0.0.0/8", "private network"},
		{"100.64.0.0/10", "carrier-grade NAT"},
		{"127.0.0.0/8", "loopback"},
		{"169.254.0.0/16", "link-local (cloud metadata)"},
		{"172.16.0.0/12", "private network"},
		{"192.168.0.0/16", "private network"},
		{"198.18.0.0/15", "benchmarking"},
		{"224.0.0.0/4", "multicast"},
		{"240.0.0.0/4", "reserved"},
		{"::/128", "unspecified"},
		{"::1/128", "loopback"},
		{"::/96", "IPv4-compatible (deprecated)"},
		{"64:ff9b:1::/48", "local-use NAT64"},
		{"fc00::/7", "unique local"},
		{"fe80::/10", "link-local"},
		{"ff00::/8", "multicast"},
	}
	out := make([]deniedRange, len(list))
	for i, r := range list {
		out[i] = deniedRange{netip.MustParsePrefix(r.cidr), r.name}
	}
	return out
}()

var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour   = netip.MustParsePrefix("2002::/16")
	loopback4   = netip.MustParsePrefix("127.0.0.0/8")
	loopback6   = netip.MustParsePrefix("::1/128")
)

// ForbiddenPeerError says why a peer was refused.
type ForbiddenPeerError struct {
	Peer  netip.Addr
	Range netip.Prefix
	Name  string
}

func (e *ForbiddenPeerError) Error() string {
	return fmt.Sprintf("peer %s is in %s (%s)", e.Peer, e.Range, e.Name)
}

// Check returns nil if the relay may send to ip, and a *ForbiddenPeerError if not.
func (f *PeerFilter) Check(ip net.IP) error {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return &ForbiddenPeerError{Name: "not an IP address"}
	}
	return f.CheckAddr(a)
}

// CheckAddr is Check for a netip.Addr.
func (f *PeerFilter) CheckAddr(a netip.Addr) error {
	a = a.Unmap().WithZone("")
	// The address itself, and the IPv4 address it carries if it is a translation of one.
	forms := []netip.Addr{a}
	if a.Is6() && (nat64Prefix.Contains(a) || sixToFour.Contains(a)) {
		b := a.As16()
		var v4 [4]byte
		if nat64Prefix.Contains(a) {
			copy(v4[:], b[12:16])
		} else {
			copy(v4[:], b[2:6])
		}
		forms = append(forms, netip.AddrFrom4(v4))
	}
	for _, form := range forms {
		if f.allowed(form) {
			continue
		}
		for _, r := range deniedRanges {
			if r.prefix.Contains(form) {
				return &ForbiddenPeerError{Peer: a, Range: r.prefix, Name: r.name}
			}
		}
	}
	return nil
}

func (f *PeerFilter) allowed(a netip.Addr) bool {
	if f.AllowLoopback && (loopback4.Contains(a) || loopback6.Contains(a)) {
		return true
	}
	for _, p := range f.Allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
