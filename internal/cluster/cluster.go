// Package cluster is what telemed's nodes share over Redis when several of them serve one clinic
// network (docs/deployment.md): a connection with a key prefix, each node's identity and heartbeat,
// and the monitoring events of every node. One node alone needs none of it.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// DefaultPrefix starts every key telemed writes, unless Options.Prefix says otherwise.
const DefaultPrefix = "telemed:"

// DefaultHeartbeatTTL is how long a node's heartbeat lives unless refreshed.
const DefaultHeartbeatTTL = 15 * time.Second

// Options configure Open.
type Options struct {
	// Prefix starts every key, so that several deployments (or tests) can share one Redis.
	// Default DefaultPrefix.
	Prefix string
	// Logger receives what an operator should see (Redis lost and back); slog.Default() if nil.
	Logger *slog.Logger
	// HeartbeatTTL is how long this node's heartbeat key lives without a refresh, so how soon the
	// other nodes take a node that stopped without a word for dead. It is refreshed every third of
	// it. Default DefaultHeartbeatTTL; at least a second.
	HeartbeatTTL time.Duration
	// Metrics, if set, receives telemed_redis_command_duration_seconds, and the counts of what
	// crosses between nodes (telemed_cluster_events_total).
	Metrics prometheus.Registerer
}

// Redis is one node's connection to the Redis its nodes share, with its node id and heartbeat.
// It is safe for concurrent use.
type Redis struct {
	client *redis.Client
	addr   string
	prefix string
	nodeID string
	log    *slog.Logger
	reg    prometheus.Registerer // Options.Metrics; nil for none

	heartbeatTTL  time.Duration
	stopHeartbeat context.CancelFunc
	heartbeatDone chan struct{}
	closeOnce     sync.Once
	closeErr      error
}

// ErrBadURL is returned for a Redis URL that is not redis:// or rediss://.
var ErrBadURL = errors.New("want redis://[user:password@]host:port/db or rediss://... for TLS")

// Open connects to the Redis at rawURL (redis:// or rediss://, as go-redis's ParseURL reads them),
// checks that it answers, and starts this node's heartbeat. Its errors name the address, never the
// password.
func Open(ctx context.Context, rawURL string, o Options) (*Redis, error) {
	quietOnce.Do(func() { redis.SetLogger(driverLog{}) })
	opts, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.HeartbeatTTL == 0 {
		o.HeartbeatTTL = DefaultHeartbeatTTL
	}
	if o.HeartbeatTTL < time.Second {
		return nil, fmt.Errorf("redis: heartbeat TTL %s is under a second", o.HeartbeatTTL)
	}
	r := &Redis{addr: opts.Addr, prefix: o.Prefix, nodeID: newNodeID(), log: o.Logger, reg: o.Metrics, heartbeatTTL: o.HeartbeatTTL}
	// The name shows in CLIENT LIST, so that an operator can tell the nodes' connections apart.
	opts.ClientName = "telemed-" + r.nodeID
	if opts.DialerRetries == 0 {
		// go-redis dials five times for each try of a command, so a stopped Redis took seconds to
		// say so: /readyz and requests should hear it at once, and this package's loops retry anyway.
		opts.DialerRetries = 1
	}
	r.client = redis.NewClient(opts)
	if o.Metrics != nil {
		h, err := newLatencyHook(o.Metrics)
		if err != nil {
			r.client.Close()
			return nil, err
		}
		r.client.AddHook(h)
	}
	if err := r.Ping(ctx); err != nil {
		r.client.Close()
		return nil, fmt.Errorf("%w (check that Redis runs there and that the URL names its host, port, password and database)", err)
	}
	if err := r.beat(ctx); err != nil {
		r.client.Close()
		return nil, err
	}
	hbCtx, stop := context.WithCancel(context.Background())
	r.stopHeartbeat, r.heartbeatDone = stop, make(chan struct{})
	go r.keepBeating(hbCtx)
	return r, nil
}

// parseURL reads a redis:// or rediss:// URL. url.Parse's errors quote the URL, password and all,
// so they are not passed on.
func parseURL(rawURL string) (*redis.Options, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis URL cannot be parsed: %w", ErrBadURL)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fmt.Errorf("redis URL with scheme %q: %w", u.Scheme, ErrBadURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("redis URL %s has no host: %w", u.Redacted(), ErrBadURL)
	}
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis URL %s: %w", u.Redacted(), err)
	}
	return opts, nil
}

// ValidateURL reports whether rawURL is a Redis URL that Open can use, without connecting.
func ValidateURL(rawURL string) error {
	_, err := parseURL(rawURL)
	return err
}

func newNodeID() string {
	b := make([]byte, 8)
	rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// Client is the go-redis client, for what the nodes share beyond this package.
func (r *Redis) Client() redis.UniversalClient { return r.client }

// Prefix starts every key of this deployment.
func (r *Redis) Prefix() string { return r.prefix }

// Key returns the key made of the prefix and parts, joined by colons: Key("node", id) is
// "telemed:node:<id>".
func (r *Redis) Key(parts ...string) string { return r.prefix + strings.Join(parts, ":") }

// NodeID is this process's id among the nodes: random, new at each start.
func (r *Redis) NodeID() string { return r.nodeID }

// Addr is the host:port of the Redis server.
func (r *Redis) Addr() string { return r.addr }

// Ping checks that Redis answers. Its error names the address.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis at %s does not answer: %w", r.addr, err)
	}
	return nil
}

// Close stops the heartbeat, removes it so that the other nodes know at once that this node has
// left, and closes the connections. It is safe to call more than once.
func (r *Redis) Close() error {
	r.closeOnce.Do(func() {
		r.stopHeartbeat()
		<-r.heartbeatDone
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := r.client.Del(ctx, r.heartbeatKey(r.nodeID)).Err()
		if err != nil {
			err = fmt.Errorf("remove the heartbeat of node %s: %w", r.nodeID, err)
		}
		r.closeErr = errors.Join(err, r.client.Close())
	})
	return r.closeErr
}

// quietOnce hushes go-redis's own log, which would print every failed dial of an outage to stderr:
// telemed says what an operator needs (readiness, one warning per outage) through its own log.
var quietOnce sync.Once

// driverLog drops go-redis's messages, except at the debug level of the default logger.
type driverLog struct{}

func (driverLog) Printf(ctx context.Context, format string, v ...any) {
	slog.Default().DebugContext(ctx, "redis driver: "+fmt.Sprintf(format, v...))
}
