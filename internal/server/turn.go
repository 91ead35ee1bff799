package server

import (
	"crypto/rand"
	"crypto/tls"
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

	"github.com/prometheus/client_golang/prometheus"

	"github.com/telemed/telemed/internal/config"
	"github.com/telemed/telemed/internal/turn"
	"github.com/telemed/telemed/protocol"
)

// turnSecretFile is where a generated TURN secret is kept, so that credentials survive a restart and
// an operator can give the same secret to external TURN servers.
const turnSecretFile = "turn-secret"

// turnSecret returns --turn-secret, or the secret kept in the data folder, made on first use.
func turnSecret(cfg config.Serve) ([]byte, error) {
	if cfg.TURNSecret != "" {
		return []byte(cfg.TURNSecret), nil
	}
	path := filepath.Join(cfg.DataDir, turnSecretFile)
	b, err := os.ReadFile(path)
	if err == nil {
		secret := strings.TrimSpace(string(b))
		if len(secret) < 16 {
			return nil, fmt.Errorf("TURN secret in %s: use at least 16 characters, or delete the file to have one generated", path)
		}
		return []byte(secret), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("TURN secret %s: %w", path, err)
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	secret := base64.RawURLEncoding.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("keep TURN secret in %s: %w", path, err)
	}
	return []byte(secret), nil
}

// startTURN runs the embedded STUN/TURN server as the configuration says.
func (s *Server) startTURN(o Options, reg prometheus.Registerer) error {
	cfg := s.cfg
	lo, hi, _ := cfg.RelayPorts()
	allow, _ := cfg.AllowPeerPrefixes()
	relayIP, guessed := s.relayIP()
	to := turn.Options{
		Addr: cfg.TURNAddr, RelayIP: relayIP, MinPort: lo, MaxPort: hi, Secret: s.turnSecret,
		Filter:    turn.PeerFilter{Allow: allow, AllowLoopback: cfg.TURNAllowLoopback},
		UserQuota: cfg.TURNUserQuota, AllocationLifetime: o.TURNAllocationLifetime, Now: o.Now,
		Logger: s.log.With("component", "turn"), Registerer: reg,
	}
	if cfg.TURNTLSCertFile() != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TURNTLSCertFile(), cfg.TURNTLSKeyFile())
		if err != nil {
			return fmt.Errorf("TURN over TLS: %w", err)
		}
		to.TLSAddr = cfg.TURNTLSAddr
		to.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	t, err := turn.Start(to)
	if err != nil {
		return fmt.Errorf("%w (is another TURN server on that port? choose another with --turn-addr, or --turn=false)", err)
	}
	s.turn = t
	args := []any{"udp_tcp", t.UDPAddr().String(), "relay_ip", relayIP.String(), "relay_ports", cfg.TURNRelayPorts}
	if t.TLSAddr() != nil {
		args = append(args, "tls", t.TLSAddr().String())
	}
	s.log.Info("STUN/TURN listening", args...)
	if guessed {
		s.log.Warn("TURN relay address guessed from this machine's interfaces; behind NAT or with several addresses set --turn-public-ip", "relay_ip", relayIP.String())
	}
	if cfg.TURNAllowLoopback {
		s.log.Warn("!!! --turn-allow-loopback is on: the TURN relay will reach services on this machine's loopback. " +
			"For tests on one machine only; never use it in production.")
	}
	return nil
}

// relayIP is the address relayed candidates carry: --turn-public-ip, else the TURN listener's own
// address, else the address this machine would use to reach the internet.
func (s *Server) relayIP() (ip netip.Addr, guessed bool) {
	if a, err := netip.ParseAddr(s.cfg.TURNPublicIP); err == nil {
		return a, false
	}
	host, _, _ := net.SplitHostPort(s.cfg.TURNAddr)
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

// iceServers builds a participant's ICE servers: the embedded STUN/TURN and any --turn-server, the
// TURN ones with a fresh credential that names the participant.
func (s *Server) iceServers(participantID string) []protocol.ICEServer {
	var stunURLs, turnURLs []string
	if s.turn != nil {
		host := s.cfg.TURNPublicIP
		if host == "" {
			host = hostName(s.baseURL)
		}
		hp := net.JoinHostPort(host, strconv.Itoa(turn.Port(s.turn.UDPAddr())))
		stunURLs = append(stunURLs, "stun:"+hp)
		turnURLs = append(turnURLs, "turn:"+hp+"?transport=udp", "turn:"+hp+"?transport=tcp")
		if a := s.turn.TLSAddr(); a != nil {
			// The certificate names the web host, so TLS clients are sent there.
			turnURLs = append(turnURLs, "turns:"+net.JoinHostPort(hostName(s.baseURL), strconv.Itoa(turn.Port(a)))+"?transport=tcp")
		}
	}
	for _, u := range s.cfg.TURNServers {
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
		if s.now != nil {
			now = s.now
		}
		c := turn.NewCredential(s.turnSecret, participantID, now().Add(s.cfg.TURNCredentialTTL))
		out = append(out, protocol.ICEServer{URLs: turnURLs, Username: c.Username, Credential: c.Password})
	}
	return out
}

// hostName is the host of a base URL, without port or brackets.
func hostName(baseURL string) string {
	h := hostOf(baseURL)
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return strings.Trim(h, "[]")
}
