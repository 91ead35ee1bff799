package monitoring

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/telemed/telemed/errcode"
)

// Enrollment codes are short enough to type, so guessing them is throttled: failed attempts are
// counted per client address and, as a last resort, across the server.
const (
	// EnrollFailureBurst is how many failed enrollments in a row one client address may make before
	// its attempts wait, one more every EnrollFailureEvery.
	EnrollFailureBurst = 10
	// EnrollFailureEvery is how often one client address gains another failed attempt once its burst
	// is spent. It is well below the server-wide rate, so that one address cannot drain the server's
	// allowance on its own and block everyone else's enrollments.
	EnrollFailureEvery = 10 * time.Second
	// ServerEnrollFailureBurst is how many failed enrollments in a row the server allows from all
	// addresses together before every attempt waits, one more a second. With codes of 31^8 that rate
	// leaves a guesser, however many addresses it has, about one chance in ten million a day for each
	// code outstanding.
	ServerEnrollFailureBurst = 300
	// maxEnrollAddresses bounds the addresses whose failures are remembered.
	maxEnrollAddresses = 10000
)

var (
	errEnrollBusyAddress = &errcode.Error{Code: errcode.Busy, Message: "too many failed enrollment attempts from this address; try again in a minute"}
	errEnrollBusyServer  = &errcode.Error{Code: errcode.Busy, Message: "too many failed enrollment attempts on this server; try again in a minute"}
)

// enrollThrottle counts failed enrollments per client address and server-wide. A blocked attempt
// counts nothing, so that a flood from one address, once its allowance is spent, takes no more of the
// server's. It is safe for concurrent use.
type enrollThrottle struct {
	mu     sync.Mutex
	server *rate.Limiter
	byAddr map[netip.Prefix]*rate.Limiter
}

func newEnrollThrottle() *enrollThrottle {
	return &enrollThrottle{server: rate.NewLimiter(rate.Every(time.Second), ServerEnrollFailureBurst),
		byAddr: make(map[netip.Prefix]*rate.Limiter)}
}

// addrKey is what failures are counted under: an IPv4 address, or an IPv6 address's /64 (one home
// or host usually holds a whole /64, so counting single IPv6 addresses would be no limit). Every
// unknown address shares the zero key.
func addrKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return netip.Prefix{}
	}
	return p
}

// check returns the busy error when from, or the server as a whole, has no failed attempt left.
func (t *enrollThrottle) check(from netip.Addr, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l := t.byAddr[addrKey(from)]; l != nil && l.TokensAt(now) < 1 {
		return errEnrollBusyAddress
	}
	if t.server.TokensAt(now) < 1 {
		return errEnrollBusyServer
	}
	return nil
}

// fail counts a failed attempt from from.
func (t *enrollThrottle) fail(from netip.Addr, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.server.AllowN(now, 1)
	k := addrKey(from)
	l := t.byAddr[k]
	if l == nil {
		if len(t.byAddr) >= maxEnrollAddresses {
			t.pruneLocked(now)
		}
		l = rate.NewLimiter(rate.Every(EnrollFailureEvery), EnrollFailureBurst)
		t.byAddr[k] = l
	}
	l.AllowN(now, 1)
}

// pruneLocked forgets the addresses whose allowance has refilled, which loses nothing: a new limiter
// is the same. If that is not enough (more addresses failing at once than are remembered) it forgets
// some others too, down to three quarters of the bound so that the next addresses do not each scan
// the map; the server-wide allowance still brakes those. t.mu must be held.
func (t *enrollThrottle) pruneLocked(now time.Time) {
	for k, l := range t.byAddr {
		if l.TokensAt(now) >= EnrollFailureBurst {
			delete(t.byAddr, k)
		}
	}
	for k := range t.byAddr {
		if len(t.byAddr) < maxEnrollAddresses*3/4 {
			break
		}
		delete(t.byAddr, k)
	}
}
