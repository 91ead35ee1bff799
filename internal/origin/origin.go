// Package origin decides whether a browser request comes from telemed's own pages. The signaling
// socket and the cookie-authenticated API both ask it, so the rule is written once.
package origin

import (
	"net/http"
	"net/url"
	"strings"
)

// Allowed reports whether r's Origin header names the host the request was sent to, or one of the
// extra hosts (host or host:port). A request without Origin is not from a browser page and is allowed:
// it must still authenticate.
func Allowed(r *http.Request, extra []string) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, h := range extra {
		if strings.EqualFold(u.Host, h) {
			return true
		}
	}
	return false
}
