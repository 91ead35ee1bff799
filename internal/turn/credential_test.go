package turn

import (
	"testing"
	"time"
)

func TestCredentialIsTheRESTForm(t *testing.T) {
	// Computed independently: printf %s '1700000000:p-42' | openssl dgst -binary -sha1 -hmac s3cret | base64
	c := NewCredential([]byte("s3cret"), "p-42", time.Unix(1700000000, 0))
	if c.Username != "1700000000:p-42" {
		t.Fatalf("username %q", c.Username)
	}
	if c.Password != "sc/+z3KDoFQkd4HGHBt7ApQfwNY=" {
		t.Fatalf("password %q", c.Password)
	}
	exp, user, err := ParseUsername(c.Username)
	if err != nil || user != "p-42" || !exp.Equal(time.Unix(1700000000, 0)) {
		t.Fatalf("parse: %v %q %v", exp, user, err)
	}
	for _, bad := range []string{"", "p-42", "1700000000", "1700000000:", "x:p-42", "-5:p", "0:p"} {
		if _, _, err := ParseUsername(bad); err == nil {
			t.Errorf("ParseUsername(%q): no error", bad)
		}
	}
}
