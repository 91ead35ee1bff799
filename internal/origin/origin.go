// Package origin decides whether a browser request comes from telemed's own pages. The signaling
// socket and the cookie-authenticated API both ask it, so the rule is written once.
package origin

import (
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Allowed reports whether r's Origin header names one of hosts (host or host:port): the server's
// public URL and the --allowed-origin ones. The Host header is never trusted for this: a page on
// a name that an attacker points at the server (DNS rebinding) sends its own name as both Origin
// and Host. A loopback host (localhost, 127.0.0.1, [::1]) stands for all three at the same port,
// as they are one server. A request without Origin is not from a browser page and is allowed: it
// must still authenticate.
func Allowed(r *http.Request, hosts []string) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" {
		return false
	}
	for _, h := range hosts {
		if strings.EqualFold(u.Host, h) || sameLoopback(u.Host, h) {
			return true
		}
	}
	return false
}

// sameLoopback reports whether a and b (host:port) are both loopback names with the same port.
func sameLoopback(a, b string) bool {
	ah, ap, err1 := net.SplitHostPort(a)
	bh, bp, err2 := net.SplitHostPort(b)
	return err1 == nil && err2 == nil && ap == bp && isLoopback(ah) && isLoopback(bh)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
