package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/telemed/telemed/internal/config"
	"github.com/telemed/telemed/internal/consultations"
	"github.com/telemed/telemed/internal/ice"
	"github.com/telemed/telemed/internal/turn"
	"github.com/telemed/telemed/protocol"
)

// turnSecret returns --turn-secret, or the secret kept in the data folder, made on first use.
func turnSecret(cfg config.Serve) ([]byte, error) { return ice.LoadSecret(cfg.DataDir, cfg.TURNSecret) }

// settingTURNSecret is where nodes sharing a store keep the TURN secret they generated.
const settingTURNSecret = "turn_secret"

// loadTURNSecret is turnSecret for this server: nodes that share a store (--store) share the
// generated secret through it, so that a credential one node hands out works on every node's relay.
// The first node to start makes it (or offers the one its data folder kept, if any).
func (s *Server) loadTURNSecret(ctx context.Context) ([]byte, error) {
	if s.cfg.TURNSecret != "" || s.cfg.StoreURL == "" {
		return turnSecret(s.cfg)
	}
	offer := ice.NewSecret()
	if b, err := os.ReadFile(filepath.Join(s.cfg.DataDir, ice.SecretFile)); err == nil && len(strings.TrimSpace(string(b))) >= ice.MinSecretLength {
		offer = strings.TrimSpace(string(b))
	}
	v, err := s.store.EnsureSetting(ctx, settingTURNSecret, offer)
	if err != nil {
		return nil, fmt.Errorf("TURN secret in the store: %w", err)
	}
	return []byte(v), nil
}

// startTURN runs the embedded STUN/TURN server as the configuration says.
func (s *Server) startTURN(o Options, reg prometheus.Registerer) error {
	cfg := s.cfg
	lo, hi, _ := cfg.RelayPorts()
	allow, _ := cfg.AllowPeerPrefixes()
	relayIP, guessed := ice.RelayAddress(cfg.TURNPublicIP, cfg.TURNAddr)
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

// iceServers builds a participant's ICE servers: the embedded STUN/TURN and any --turn-server, the
// TURN ones with a fresh credential that names the participant.
func (s *Server) iceServers(participantID string) []protocol.ICEServer {
	return s.servers(s.cfg.TURNCredentialTTL).For(participantID)
}

// testICEServers builds the ICE servers of a connection test, whose TURN credential lasts
// consultations.TestCredentialTTL (or --turn-credential-ttl if shorter): it is handed out before
// anyone is admitted.
func (s *Server) testICEServers(user string) ([]protocol.ICEServer, time.Time) {
	ttl := min(consultations.TestCredentialTTL, s.cfg.TURNCredentialTTL)
	list := s.servers(ttl).For(user)
	for _, is := range list {
		if is.Username != "" {
			now := time.Now
			if s.now != nil {
				now = s.now
			}
			return list, now().Add(ttl).Truncate(time.Second).UTC()
		}
	}
	return list, time.Time{}
}

// servers are the ICE servers of the configuration, with TURN credentials that last ttl.
func (s *Server) servers(ttl time.Duration) ice.Servers {
	servers := ice.Servers{Host: s.cfg.TURNPublicIP, WebHost: hostName(s.baseURL), External: s.cfg.TURNServers,
		Secret: s.turnSecret, CredentialTTL: ttl, Now: s.now}
	if s.turn != nil {
		servers.UDPPort = turn.Port(s.turn.UDPAddr())
		servers.TLSPort = turn.Port(s.turn.TLSAddr())
	}
	return servers
}

// hostName is the host of a base URL, without port or brackets.
func hostName(baseURL string) string {
	h := hostOf(baseURL)
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return strings.Trim(h, "[]")
}
