// Package config is telemed's configuration: defaults in one place, command-line flags, and an
// environment variable TELEMED_<FLAG> for every flag, validated before anything starts.
package config

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/telemed/telemed/internal/consult"
)

// Defaults.
const (
	DefaultHTTPAddr          = "127.0.0.1:8080"
	DefaultDataDir           = "./telemed-data"
	DefaultTURNAddr          = "0.0.0.0:3478"
	DefaultTURNTLSAddr       = "0.0.0.0:5349"
	DefaultTURNRelayPorts    = "49152-65535"
	DefaultTURNUserQuota     = 10
	DefaultTURNCredentialTTL = 12 * time.Hour
	// DefaultMaxParticipants and its bounds are the room's (a full mesh, devices not counted).
	DefaultMaxParticipants = consult.DefaultMaxPeople
	MinMaxParticipants     = consult.MinMaxPeople
	MaxMaxParticipants     = consult.MaxMaxPeople
)

// Serve configures `telemed serve`.
type Serve struct {
	HTTPAddr       string   // --http: address to listen on
	DataDir        string   // --data: folder for the database and secrets
	StoreURL       string   // --store: PostgreSQL database URL; empty is SQLite in --data
	BaseURL        string   // --base-url: public URL in links; derived from --http if empty
	TLSCert        string   // --tls-cert: certificate file (PEM); serve HTTPS when set
	TLSKey         string   // --tls-key: private key file (PEM)
	LogLevel       string   // --log-level: debug, info, warn, error
	AllowedOrigins []string // --allowed-origin: extra origins whose pages may use the API (repeatable)

	TURN               bool          // --turn: run the embedded STUN/TURN server
	TURNAddr           string        // --turn-addr: UDP and TCP address of STUN/TURN
	TURNTLSAddr        string        // --turn-tls-addr: TURN over TLS, when a certificate is configured
	TURNTLSCert        string        // --turn-tls-cert: certificate for TURN over TLS (default: --tls-cert)
	TURNTLSKey         string        // --turn-tls-key: its key (default: --tls-key)
	TURNPublicIP       string        // --turn-public-ip: address announced to clients and carried by relayed candidates
	TURNRelayPorts     string        // --turn-relay-ports: MIN-MAX ports for relays
	TURNSecret         string        // --turn-secret: TURN REST shared secret (default: generated, kept in --data)
	TURNAllowPeers     []string      // --turn-allow-peer: CIDR ranges the relay may reach despite the deny list
	TURNAllowLoopback  bool          // --turn-allow-loopback: relay to loopback; local testing only
	TURNUserQuota      int           // --turn-user-quota: active allocations per participant
	TURNCredentialTTL  time.Duration // --turn-credential-ttl: lifetime of the TURN credentials handed out
	TURNServers        []string      // --turn-server: external STUN/TURN URLs handed to clients (repeatable)
	ICETransportPolicy string        // --ice-transport-policy: all, or relay to hide addresses
	MaxParticipants    int           // --max-participants: people in a call, devices not counted

	Redis       string // --redis: URL of the Redis that the nodes share (redis:// or rediss://); none for one node
	RedisPrefix string // --redis-prefix: the start of every key telemed writes in Redis
}

// DefaultServe returns the defaults of `telemed serve`.
func DefaultServe() Serve {
	return Serve{HTTPAddr: DefaultHTTPAddr, DataDir: DefaultDataDir, LogLevel: "info",
		TURN: true, TURNAddr: DefaultTURNAddr, TURNTLSAddr: DefaultTURNTLSAddr, TURNRelayPorts: DefaultTURNRelayPorts,
		TURNUserQuota: DefaultTURNUserQuota, TURNCredentialTTL: DefaultTURNCredentialTTL, ICETransportPolicy: "all",
		MaxParticipants: DefaultMaxParticipants}
}

// Flags registers c's fields on fs.
func (c *Serve) Flags(fs *flag.FlagSet) {
	fs.StringVar(&c.HTTPAddr, "http", c.HTTPAddr, "`address` to serve HTTP on")
	fs.StringVar(&c.DataDir, "data", c.DataDir, "`folder` for the database and secrets")
	StoreFlag(fs, &c.StoreURL)
	fs.StringVar(&c.BaseURL, "base-url", c.BaseURL, "public `URL` used in links (default: http://<http address>)")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "TLS certificate `file` (PEM); serves HTTPS when set with --tls-key")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "TLS private key `file` (PEM)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log `level`: debug, info, warn or error")
	fs.Func("allowed-origin", "extra `origin` (scheme://host:port) whose pages may use this server; repeatable or comma-separated", listFlag(&c.AllowedOrigins))

	fs.BoolVar(&c.TURN, "turn", c.TURN, "run the embedded STUN/TURN server (--turn=false to use --turn-server or none)")
	fs.StringVar(&c.TURNAddr, "turn-addr", c.TURNAddr, "`address` (host:port) for STUN/TURN over UDP and TCP")
	fs.StringVar(&c.TURNTLSAddr, "turn-tls-addr", c.TURNTLSAddr, "`address` for TURN over TLS, served when a certificate is configured")
	fs.StringVar(&c.TURNTLSCert, "turn-tls-cert", c.TURNTLSCert, "certificate `file` (PEM) for TURN over TLS (default: --tls-cert)")
	fs.StringVar(&c.TURNTLSKey, "turn-tls-key", c.TURNTLSKey, "private key `file` (PEM) for TURN over TLS (default: --tls-key)")
	fs.StringVar(&c.TURNPublicIP, "turn-public-ip", c.TURNPublicIP, "public `IP` announced to clients and carried by relayed candidates (default: guessed; set it behind NAT)")
	fs.StringVar(&c.TURNRelayPorts, "turn-relay-ports", c.TURNRelayPorts, "`MIN-MAX` UDP/TCP ports for relays; open them in the firewall")
	fs.StringVar(&c.TURNSecret, "turn-secret", c.TURNSecret, "TURN REST shared `secret` (default: generated and kept in the data folder); share it with external TURN servers")
	fs.Func("turn-allow-peer", "`CIDR` the relay may reach despite the deny list of private and special ranges; repeatable or comma-separated", listFlag(&c.TURNAllowPeers))
	fs.BoolVar(&c.TURNAllowLoopback, "turn-allow-loopback", c.TURNAllowLoopback, "let the relay reach 127.0.0.0/8 and ::1: for testing on one machine only, never in production")
	fs.IntVar(&c.TURNUserQuota, "turn-user-quota", c.TURNUserQuota, "active relay allocations one participant may hold (-1: no limit)")
	fs.DurationVar(&c.TURNCredentialTTL, "turn-credential-ttl", c.TURNCredentialTTL, "how long a TURN credential can start new allocations; calls outlive it")
	fs.Func("turn-server", "external STUN/TURN `URL` (stun:, turn: or turns:) handed to clients with credentials from --turn-secret; repeatable or comma-separated", listFlag(&c.TURNServers))
	fs.IntVar(&c.MaxParticipants, "max-participants", c.MaxParticipants, "people a call holds (2 to 6; devices are not counted): every pair has its own peer connection, so each person sends their video once per other person")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", c.RedisPrefix, "`prefix` of every key in --redis, so that several deployments can share one Redis (default \"telemed:\")")
	fs.StringVar(&c.Redis, "redis", c.Redis, "`URL` of the Redis that several nodes share (redis://[user:password@]host:port/db, or rediss:// for TLS); none for one node")
	fs.StringVar(&c.ICETransportPolicy, "ice-transport-policy", c.ICETransportPolicy, "`policy` for every call: all, or relay (media only through TURN, so neither side learns the other's address)")
}

// listFlag appends each comma-separated value to dst, so that a list can be given by repeating the
// flag or, in one TELEMED_<FLAG> variable, with commas.
func listFlag(dst *[]string) func(string) error {
	return func(s string) error {
		for _, v := range strings.Split(s, ",") {
			if v = strings.TrimSpace(v); v != "" {
				*dst = append(*dst, v)
			}
		}
		return nil
	}
}

// Validate checks the configuration and fills in derived values. Its errors say what to fix.
func (c *Serve) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("--http %q: want host:port, such as 127.0.0.1:8080", c.HTTPAddr))
	}
	if strings.TrimSpace(c.DataDir) == "" {
		errs = append(errs, errors.New("--data: a folder is required"))
	}
	if err := CheckStoreURL(c.StoreURL); err != nil {
		errs = append(errs, err)
	}
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			errs = append(errs, fmt.Errorf("--base-url %q: want scheme://host[:port] with no path, such as https://telemed.example.org", c.BaseURL))
		}
		c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.LogLevel))
	}
	for _, o := range c.AllowedOrigins {
		if u, err := url.Parse(o); err != nil || u.Host == "" {
			errs = append(errs, fmt.Errorf("--allowed-origin %q: want scheme://host[:port]", o))
		}
	}
	if err := validRedisURL(c.Redis); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.validateTURN()...)
	return errors.Join(errs...)
}

// validRedisURL checks --redis without connecting. Its errors never repeat the URL as given, which
// may hold a password.
func validRedisURL(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Hostname() == "" {
		return errors.New("--redis: want redis://[user:password@]host:port/db, such as redis://127.0.0.1:6379/0, or rediss:// for TLS")
	}
	return nil
}

func (c *Serve) validateTURN() []error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.TURNAddr); c.TURN && err != nil {
		errs = append(errs, fmt.Errorf("--turn-addr %q: want host:port, such as 0.0.0.0:3478", c.TURNAddr))
	}
	if _, _, err := net.SplitHostPort(c.TURNTLSAddr); c.TURN && c.TURNTLSCertFile() != "" && err != nil {
		errs = append(errs, fmt.Errorf("--turn-tls-addr %q: want host:port, such as 0.0.0.0:5349", c.TURNTLSAddr))
	}
	if (c.TURNTLSCert == "") != (c.TURNTLSKey == "") {
		errs = append(errs, errors.New("--turn-tls-cert and --turn-tls-key go together"))
	}
	if c.TURNPublicIP != "" {
		a, err := netip.ParseAddr(c.TURNPublicIP)
		if err != nil || a.IsUnspecified() {
			errs = append(errs, fmt.Errorf("--turn-public-ip %q: want this server's public IP address, such as 203.0.113.10", c.TURNPublicIP))
		} else if host, _, err := net.SplitHostPort(c.TURNAddr); err == nil {
			// Relays take the listener's address family; an IPv6 relay address behind IPv4 listeners
			// would make every allocation fail.
			if l, err := netip.ParseAddr(host); err == nil && l.Unmap().Is4() != a.Unmap().Is4() {
				errs = append(errs, fmt.Errorf("--turn-public-ip %s and --turn-addr %s: use addresses of the same family (IPv4 or IPv6)", c.TURNPublicIP, c.TURNAddr))
			}
		}
	}
	if _, _, err := c.RelayPorts(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.AllowPeerPrefixes(); err != nil {
		errs = append(errs, err)
	}
	if c.TURNUserQuota == 0 || c.TURNUserQuota < -1 {
		errs = append(errs, fmt.Errorf("--turn-user-quota %d: want a positive number, or -1 for no limit", c.TURNUserQuota))
	}
	if c.TURNCredentialTTL < time.Minute {
		errs = append(errs, fmt.Errorf("--turn-credential-ttl %s: want at least 1m", c.TURNCredentialTTL))
	}
	if c.TURNSecret != "" && len(c.TURNSecret) < 16 {
		errs = append(errs, errors.New("--turn-secret: use at least 16 characters (or leave it empty to have one generated)"))
	}
	for _, u := range c.TURNServers {
		scheme, rest, _ := strings.Cut(u, ":")
		if (scheme != "stun" && scheme != "turn" && scheme != "turns") || rest == "" {
			errs = append(errs, fmt.Errorf("--turn-server %q: want stun:host[:port], turn:host[:port][?transport=udp|tcp] or turns:host[:port]", u))
		}
	}
	if c.MaxParticipants < MinMaxParticipants || c.MaxParticipants > MaxMaxParticipants {
		errs = append(errs, fmt.Errorf("--max-participants %d: want %d to %d (a full mesh of peer connections: each person sends once per other person)", c.MaxParticipants, MinMaxParticipants, MaxMaxParticipants))
	}
	switch c.ICETransportPolicy {
	case "all":
	case "relay":
		if !c.TURN && !c.hasExternalTURN() {
			errs = append(errs, errors.New("--ice-transport-policy relay needs a TURN server: the embedded one (--turn) or --turn-server turn:..."))
		}
	default:
		errs = append(errs, fmt.Errorf("--ice-transport-policy %q: want all or relay", c.ICETransportPolicy))
	}
	return errs
}

func (c *Serve) hasExternalTURN() bool {
	for _, u := range c.TURNServers {
		if strings.HasPrefix(u, "turn") {
			return true
		}
	}
	return false
}

// TURNTLSCertFile is the certificate for TURN over TLS: --turn-tls-cert, or else --tls-cert.
func (c *Serve) TURNTLSCertFile() string {
	if c.TURNTLSCert != "" {
		return c.TURNTLSCert
	}
	return c.TLSCert
}

// TURNTLSKeyFile is the key that goes with TURNTLSCertFile.
func (c *Serve) TURNTLSKeyFile() string {
	if c.TURNTLSCert != "" {
		return c.TURNTLSKey
	}
	return c.TLSKey
}

// RelayPorts parses --turn-relay-ports.
func (c *Serve) RelayPorts() (lo, hi uint16, err error) {
	a, b, ok := strings.Cut(c.TURNRelayPorts, "-")
	x, errA := strconv.ParseUint(strings.TrimSpace(a), 10, 16)
	y, errB := strconv.ParseUint(strings.TrimSpace(b), 10, 16)
	if !ok || errA != nil || errB != nil || x == 0 || y < x {
		return 0, 0, fmt.Errorf("--turn-relay-ports %q: want MIN-MAX, such as 49152-65535", c.TURNRelayPorts)
	}
	return uint16(x), uint16(y), nil
}

// AllowPeerPrefixes parses --turn-allow-peer.
func (c *Serve) AllowPeerPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for _, s := range c.TURNAllowPeers {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			if a, errAddr := netip.ParseAddr(s); errAddr == nil {
				p, err = a.Prefix(a.BitLen())
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("--turn-allow-peer %q: want a CIDR range such as 10.20.0.0/16", s))
			continue
		}
		out = append(out, p.Masked())
	}
	return out, errors.Join(errs...)
}

// OriginHosts returns the host[:port] of each allowed origin.
func (c *Serve) OriginHosts() []string {
	var hosts []string
	for _, o := range c.AllowedOrigins {
		if u, err := url.Parse(o); err == nil {
			hosts = append(hosts, u.Host)
		}
	}
	return hosts
}

// StoreFlag registers --store on fs: serve and every command that takes --data take it.
func StoreFlag(fs *flag.FlagSet, dst *string) {
	fs.StringVar(dst, "store", *dst, "PostgreSQL database `URL` (postgres://USER[:PASSWORD]@HOST[:PORT]/DB) for several nodes; empty: SQLite in --data")
}

// CheckStoreURL checks a --store value: empty (SQLite in --data) or a postgres:// or postgresql://
// URL. The error names the accepted forms and never shows a password.
func CheckStoreURL(s string) error {
	if s == "" || strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		return nil
	}
	shown := "(a value that is not a URL)"
	if u, err := url.Parse(s); err == nil {
		shown = u.Redacted()
	}
	return fmt.Errorf("--store %s: want postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (or postgresql://...), or nothing for SQLite in --data", shown)
}

// DatabasePath is the SQLite file inside a data folder.
func DatabasePath(dataDir string) string { return filepath.Join(dataDir, "telemed.db") }

// EnvName is the environment variable that sets a flag: TELEMED_ and the flag's name in upper case with
// dashes as underscores (--base-url is TELEMED_BASE_URL).
func EnvName(flagName string) string {
	return "TELEMED_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse parses args into fs, after applying TELEMED_<FLAG> environment variables for the flags the
// command line does not set. The command line wins over the environment.
func Parse(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if getenv == nil {
		getenv = os.Getenv
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		if v := getenv(EnvName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, err))
			}
		}
	})
	return errors.Join(errs...)
}
