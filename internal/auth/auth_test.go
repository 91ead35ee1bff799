package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/telemed/telemed/internal/consult"
)

var cheap = PasswordParams{Time: 1, Memory: 1024, Threads: 1}

func TestPassword(t *testing.T) {
	hash, err := HashPassword("correct horse battery", cheap)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(hash, "$argon2id$v=19$m=1024,t=1,p=1$") {
		t.Fatalf("hash %q is not a PHC argon2id string", hash)
	}
	if ok, err := VerifyPassword(hash, "correct horse battery"); !ok || err != nil {
		t.Fatalf("right password: %v %v", ok, err)
	}
	if ok, _ := VerifyPassword(hash, "correct horse batterz"); ok {
		t.Fatal("wrong password accepted")
	}
	other, _ := HashPassword("correct horse battery", cheap)
	if other == hash {
		t.Fatal("two hashes of one password are equal: salt missing")
	}
	if _, err := HashPassword("short", cheap); !errors.Is(err, ErrWeakPassword) {
		t.Fatalf("short password: %v", err)
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=1,t=1,p=1$AA$AA", "$argon2id$v=19$m=x$AA$AA", "$argon2id$v=19$m=1024,t=1,p=1$!!$AA"} {
		if ok, err := VerifyPassword(bad, "x"); ok || err == nil {
			t.Errorf("VerifyPassword(%q) = %v, %v; want an error", bad, ok, err)
		}
	}
}

func TestLinks(t *testing.T) {
	s, err := NewLinkSigner([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewLinkSigner([]byte("short")); err == nil {
		t.Fatal("short secret accepted")
	}
	now := time.Unix(1_800_000_000, 0)
	exp := now.Add(time.Hour)
	token := s.Sign(LinkClaims{ConsultationID: "c_abc", Role: consult.RolePatient, ExpiresAt: exp})

	c, err := s.Verify("c_abc", token, now)
	if err != nil || c.Role != consult.RolePatient || !c.ExpiresAt.Equal(exp) {
		t.Fatalf("Verify = %+v, %v", c, err)
	}
	deviceToken := s.Sign(LinkClaims{ConsultationID: "c_abc", Role: consult.RoleDevice, ExpiresAt: exp, Subject: "d_1"})
	if c, err := s.Verify("c_abc", deviceToken, now); err != nil || c.Subject != "d_1" || c.Role != consult.RoleDevice {
		t.Fatalf("Verify device link = %+v, %v", c, err)
	}
	parts := strings.Split(token, ".")
	other, _ := NewLinkSigner([]byte(strings.Repeat("z", 32)))
	cases := []struct {
		name, id, token string
		at              time.Time
		want            error
	}{
		{"expired", "c_abc", token, exp, consult.ErrLinkExpired},
		{"other consultation", "c_xyz", token, now, consult.ErrWrongConsultation},
		{"role changed", "c_abc", strings.Replace(token, ".patient.", ".provider.", 1), now, consult.ErrBadToken},
		{"expiry extended", "c_abc", parts[0] + "." + parts[1] + ".1900000000." + parts[3], now, consult.ErrBadToken},
		{"signature changed", "c_abc", token[:len(token)-1] + "A", now, consult.ErrBadToken},
		{"other server's key", "c_abc", other.Sign(LinkClaims{ConsultationID: "c_abc", Role: consult.RolePatient, ExpiresAt: exp}), now, consult.ErrBadToken},
		{"unknown role", "c_abc", "c_abc.admin.1900000000.x", now, consult.ErrBadToken},
		{"too few parts", "c_abc", "c_abc.patient", now, consult.ErrBadToken},
		{"empty", "c_abc", "", now, consult.ErrBadToken},
		{"huge", "c_abc", strings.Repeat("a.", 600), now, consult.ErrBadToken},
		{"subject added", "c_abc", parts[0] + "." + parts[1] + "." + parts[2] + ".d_1." + parts[3], now, consult.ErrBadToken},
		{"subject changed", "c_abc", strings.Replace(deviceToken, ".d_1.", ".d_2.", 1), now, consult.ErrBadToken},
		{"subject removed", "c_abc", strings.Replace(deviceToken, ".d_1.", ".", 1), now, consult.ErrBadToken},
		{"empty subject", "c_abc", strings.Replace(deviceToken, ".d_1.", "..", 1), now, consult.ErrBadToken},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Verify(tc.id, tc.token, tc.at); !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestTokens(t *testing.T) {
	a, ha := NewToken("tm_")
	b, _ := NewToken("tm_")
	if a == b || !strings.HasPrefix(a, "tm_") || len(a) < 40 {
		t.Fatalf("tokens %q %q", a, b)
	}
	if HashToken(a) != ha || strings.Contains(ha, a) {
		t.Fatal("hash does not match, or contains the token")
	}
}
