package origin

import (
	"net/http/httptest"
	"testing"
)

func TestAllowed(t *testing.T) {
	hosts := []string{"telemed.example:8080", "proxy.example"}
	cases := []struct {
		host, origin string
		want         bool
	}{
		{"telemed.example:8080", "", true},
		{"telemed.example:8080", "http://telemed.example:8080", true},
		{"telemed.example:8080", "HTTP://TELEMED.EXAMPLE:8080", true},
		{"telemed.example:8080", "https://proxy.example", true},
		{"telemed.example:8080", "http://telemed.example:9999", false},
		{"telemed.example:8080", "https://evil.example", false},
		{"telemed.example:8080", "null", false},
		{"telemed.example:8080", "http://telemed.example:8080.evil.example", false},
		// DNS rebinding: the attacker's name in both headers is still not ours.
		{"evil.example", "http://evil.example", false},
		{"evil.example:8080", "http://evil.example:8080", false},
		// A page reached through a proxy is ours only if its origin is listed.
		{"telemed.example:8080", "http://127.0.0.1:8080", false},
	}
	for _, tc := range cases {
		r := httptest.NewRequest("GET", "http://"+tc.host+"/ws", nil)
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if got := Allowed(r, hosts); got != tc.want {
			t.Errorf("Host %s, Origin %q: %v, want %v", tc.host, tc.origin, got, tc.want)
		}
	}
}

func TestAllowedLoopback(t *testing.T) {
	cases := []struct {
		origin string
		want   bool
	}{
		{"http://127.0.0.1:8080", true},
		{"http://localhost:8080", true},
		{"http://[::1]:8080", true},
		{"http://localhost:9090", false},
		{"http://localhost", false},
		{"http://localhost.evil.example:8080", false},
	}
	for _, tc := range cases {
		r := httptest.NewRequest("GET", "http://"+"127.0.0.1:8080/ws", nil)
		r.Header.Set("Origin", tc.origin)
		if got := Allowed(r, []string{"localhost:8080"}); got != tc.want {
			t.Errorf("Origin %q: %v, want %v", tc.origin, got, tc.want)
		}
	}
}
