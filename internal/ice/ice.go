// Package ice is what a participant is told about reaching the others: the ICE servers of its
// RTCConfiguration (the embedded STUN/TURN relay's URLs, any external ones, and a time-limited TURN
// credential naming the participant), and what those rest on: the server's TURN secret, kept in the
// data folder, and the address the relay announces. It opens no socket of its own.
package ice

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/telemed/telemed/internal/turn"
	"github.com/telemed/telemed/protocol"
)

// SecretFile is where a generated TURN secret is kept in the data folder, so that credentials survive
// a restart and an operator can give the same secret to external TURN servers.
const SecretFile = "turn-secret"

// MinSecretLength is the shortest TURN secret accepted, in bytes.
const MinSecretLength = 16

// LoadSecret returns the TURN secret: configured (--turn-secret) if it is set, else the one kept in
// dataDir, made and kept (mode 0600) on first use.
func LoadSecret(dataDir, configured string) ([]byte, error) {
	if configured != "" {
		return []byte(configured), nil
	}
	path := filepath.Join(dataDir, SecretFile)
	b, err := os.ReadFile(path)
	if err == nil {
		secret := strings.TrimSpace(string(b))
		if len(secret) < MinSecretLength {
			return nil, fmt.Errorf("TURN secret in %s: use at least %d characters, or delete the file to have one generated", path, MinSecretLength)
		}
		return []byte(secret), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("TURN secret %s: %w", path, err)
	}
	secret := NewSecret()
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("keep TURN secret in %s: %w", path, err)
	}
	return []byte(secret), nil
}

// NewSecret returns a new random TURN secret.
func NewSecret() string {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(raw)
}

// RelayAddress is the address relayed candidates carry: publicIP (--turn-public-ip) if it is an IP,
// else the TURN listener's own address (listenAddr, host:port) if it names one, else the address this
// machine would use to reach the internet. guessed is set for the last, which is wrong behind NAT.
func RelayAddress(publicIP, listenAddr string) (ip netip.Addr, guessed bool) {
	if a, err := netip.ParseAddr(publicIP); err == nil {
		return a, false
	}
	host, _, _ := net.SplitHostPort(listenAddr)
	if a, err := netip.ParseAddr(host); err == nil && !a.IsUnspecified() {
		return a, false
	}
	// No packet is sent: connecting a UDP socket only asks the routing table for a source address.
	if c, err := net.Dial("udp4", "192.0.2.1:9"); err == nil {
		defer c.Close()
		if a, ok := netip.AddrFromSlice(c.LocalAddr().(*net.UDPAddr).IP); ok {
			return a.Unmap(), true
		}
	}
	return netip.MustParseAddr("127.0.0.1"), true
}

// Servers builds each participant's ICE servers.
type Servers struct {
	// Host is the name or address clients reach the embedded relay at (--turn-public-ip). Default:
	// WebHost.
	Host string
	// WebHost is the web server's host name, which a TURN-over-TLS certificate names.
	WebHost string
	// UDPPort is the embedded relay's UDP and TCP port; 0 when it is off.
	UDPPort int
	// TLSPort is its TURN-over-TLS port; 0 when there is none.
	TLSPort int
	// External are --turn-server URLs: stun: ones are handed out as they are, turn: and turns: ones
	// with the credential.
	External []string
	// Secret signs the TURN credentials. Required when there is a TURN URL.
	Secret []byte
	// CredentialTTL is how long a credential may start new allocations. Required with TURN URLs:
	// zero makes credentials that expire as they are made.
	CredentialTTL time.Duration
	// Now is the clock; time.Now if nil.
	Now func() time.Time
}

// For returns the ICE servers for a participant: the STUN URLs, and the TURN URLs with a fresh
// credential that names the participant.
func (s Servers) For(participantID string) []protocol.ICEServer {
	var stunURLs, turnURLs []string
	if s.UDPPort != 0 {
		host := s.Host
		if host == "" {
			host = s.WebHost
		}
		hp := net.JoinHostPort(host, strconv.Itoa(s.UDPPort))
		stunURLs = append(stunURLs, "stun:"+hp)
		turnURLs = append(turnURLs, "turn:"+hp+"?transport=udp", "turn:"+hp+"?transport=tcp")
		if s.TLSPort != 0 {
			// The certificate names the web host, so TLS clients are sent there.
			turnURLs = append(turnURLs, "turns:"+net.JoinHostPort(s.WebHost, strconv.Itoa(s.TLSPort))+"?transport=tcp")
		}
	}
	for _, u := range s.External {
		if strings.HasPrefix(u, "stun:") {
			stunURLs = append(stunURLs, u)
		} else {
			turnURLs = append(turnURLs, u)
		}
	}
	out := []protocol.ICEServer{}
	if len(stunURLs) > 0 {
		out = append(out, protocol.ICEServer{URLs: stunURLs})
	}
	if len(turnURLs) > 0 {
		now := time.Now
		if s.Now != nil {
			now = s.Now
		}
		c := turn.NewCredential(s.Secret, participantID, now().Add(s.CredentialTTL))
		out = append(out, protocol.ICEServer{URLs: turnURLs, Username: c.Username, Credential: c.Password})
	}
	return out
}
