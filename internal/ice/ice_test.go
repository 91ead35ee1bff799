package ice

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/telemed/telemed/internal/turn"
	"github.com/telemed/telemed/protocol"
)

func TestLoadSecret(t *testing.T) {
	dir := t.TempDir()
	first, err := LoadSecret(dir, "")
	if err != nil || len(first) < MinSecretLength {
		t.Fatalf("first LoadSecret = %q, %v", first, err)
	}
	info, err := os.Stat(filepath.Join(dir, SecretFile))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v, %v; want mode 0600", info, err)
	}
	if again, err := LoadSecret(dir, ""); err != nil || string(again) != string(first) {
		t.Fatalf("second LoadSecret = %q, %v; want the kept %q", again, err, first)
	}
	if got, err := LoadSecret(dir, "configured-secret-wins"); err != nil || string(got) != "configured-secret-wins" {
		t.Fatalf("configured secret: %q, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(dir, SecretFile), []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSecret(dir, ""); err == nil || !strings.Contains(err.Error(), "at least 16 characters") || !strings.Contains(err.Error(), "delete the file") {
		t.Fatalf("a short kept secret: %v, want an error saying what to do", err)
	}
	if _, err := LoadSecret(filepath.Join(dir, "missing", "folder"), ""); err == nil {
		t.Fatal("a secret that cannot be kept gave no error")
	}
}

func TestRelayAddress(t *testing.T) {
	cases := []struct {
		public, listen, want string
		guessed              bool
	}{
		{"203.0.113.10", "0.0.0.0:3478", "203.0.113.10", false},
		{"", "192.0.2.7:3478", "192.0.2.7", false},
		{"", "[2001:db8::1]:3478", "2001:db8::1", false},
	}
	for _, c := range cases {
		ip, guessed := RelayAddress(c.public, c.listen)
		if ip.String() != c.want || guessed != c.guessed {
			t.Errorf("RelayAddress(%q, %q) = %s, %v; want %s, %v", c.public, c.listen, ip, guessed, c.want, c.guessed)
		}
	}
	if ip, guessed := RelayAddress("", "0.0.0.0:3478"); !guessed || !ip.IsValid() || ip.IsUnspecified() {
		t.Errorf("an unspecified listener: %s, guessed %v; want a guessed address", ip, guessed)
	}
}

func TestServers(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	secret := []byte("0123456789abcdef0123")
	s := Servers{Host: "203.0.113.10", WebHost: "tm.example", UDPPort: 3478, TLSPort: 5349,
		External: []string{"stun:stun.example:3478", "turns:relay.example:443?transport=tcp"},
		Secret:   secret, CredentialTTL: time.Hour, Now: func() time.Time { return now }}
	got := s.For("p_ada")
	want := turn.NewCredential(secret, "p_ada", now.Add(time.Hour))
	wantServers := []protocol.ICEServer{
		{URLs: []string{"stun:203.0.113.10:3478", "stun:stun.example:3478"}},
		{URLs: []string{"turn:203.0.113.10:3478?transport=udp", "turn:203.0.113.10:3478?transport=tcp",
			"turns:tm.example:5349?transport=tcp", "turns:relay.example:443?transport=tcp"},
			Username: want.Username, Credential: want.Password},
	}
	if !reflect.DeepEqual(got, wantServers) {
		t.Fatalf("For = %+v\nwant %+v", got, wantServers)
	}
	if !strings.HasSuffix(got[1].Username, ":p_ada") || !strings.HasPrefix(got[1].Username, strconv.FormatInt(now.Add(time.Hour).Unix(), 10)+":") {
		t.Fatalf("credential %q must name the participant and expire at now+TTL", got[1].Username)
	}
	if s := (Servers{Host: "::1", UDPPort: 3478, Secret: secret}).For("p"); s[0].URLs[0] != "stun:[::1]:3478" {
		t.Fatalf("IPv6 host: %v", s[0].URLs)
	}
	if s := (Servers{WebHost: "tm.example", UDPPort: 3478, Secret: secret, CredentialTTL: time.Hour}).For("p"); s[0].URLs[0] != "stun:tm.example:3478" {
		t.Fatalf("no public IP: %v, want the web host", s[0].URLs)
	}
	if s := (Servers{}).For("p"); len(s) != 0 || s == nil {
		t.Fatalf("no relay and no external servers: %#v, want an empty list (JSON [])", s)
	}
	if s := (Servers{External: []string{"stun:stun.example"}}).For("p"); len(s) != 1 || s[0].Username != "" {
		t.Fatalf("STUN only: %+v, want no credential", s)
	}
}
