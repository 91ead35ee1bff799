package client

import (
	"strings"
	"testing"
	"time"

	"github.com/telemed/telemed/internal/auth"
	"github.com/telemed/telemed/internal/consult"
)

// TestRoleOfToken reads the role out of tokens as internal/auth signs them, in both forms: a
// consultation's own links (4 parts) and links issued to one holder, an invitation or a device (5).
func TestRoleOfToken(t *testing.T) {
	signer, err := auth.NewLinkSigner([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	for _, c := range []struct {
		role    consult.Role
		subject string
		parts   int
	}{
		{consult.RoleProvider, "", 4},
		{consult.RolePatient, "", 4},
		{consult.RoleGuest, "i_8kq3x", 5},
		{consult.RoleClinician, "i_2bq9z", 5},
		{consult.RoleDevice, "d_7f1aa", 5},
	} {
		token := signer.Sign(auth.LinkClaims{ConsultationID: "c_8kq3", Role: c.role, ExpiresAt: exp, Subject: c.subject})
		if n := strings.Count(token, ".") + 1; n != c.parts {
			t.Fatalf("%s token %q has %d parts, want %d", c.role, token, n, c.parts)
		}
		if got := roleOfToken(token); got != string(c.role) {
			t.Errorf("roleOfToken(%q) = %q, want %q", token, got, c.role)
		}
	}
	for _, bad := range []string{"", "c_8kq3", "c_8kq3.provider.1", "c_8kq3.admin.1.sig", "c_8kq3.1764000000.provider.sig",
		"c.provider.1.a.b.sig", "c_8kq3..1.sig"} {
		if got := roleOfToken(bad); got != "" {
			t.Errorf("roleOfToken(%q) = %q, want \"\"", bad, got)
		}
	}
}
