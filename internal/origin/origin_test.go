package origin

import (
	"net/http/httptest"
	"testing"
)

func TestAllowed(t *testing.T) {
	cases := []struct {
		origin string
		want   bool
	}{
		{"", true},
		{"http://telemed.example:8080", true},
		{"HTTP://TELEMED.EXAMPLE:8080", true},
		{"https://proxy.example", true},
		{"http://telemed.example:9999", false},
		{"https://evil.example", false},
		{"null", false},
		{"http://telemed.example:8080.evil.example", false},
	}
	for _, tc := range cases {
		r := httptest.NewRequest("GET", "http://telemed.example:8080/ws", nil)
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if got := Allowed(r, []string{"proxy.example"}); got != tc.want {
			t.Errorf("Origin %q: %v, want %v", tc.origin, got, tc.want)
		}
	}
}
