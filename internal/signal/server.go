// Package signal is telemed's signaling server: one loop per WebSocket client, and the hub that keeps
// each consultation's waiting room and relays offers, answers and ICE candidates between its admitted
// members (docs/signaling.md). Media never passes through it. Package route delivers its messages.
package signal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/origin"
	"github.com/telemed/telemed/internal/signal/hub"
	"github.com/telemed/telemed/internal/signal/rooms"
	"github.com/telemed/telemed/internal/signal/route"
	"github.com/telemed/telemed/protocol"
)

// Options configure a Server: the hub's (who may join what, the rooms, where messages go) and the
// connections'. Only Gatekeeper is required; every other field has the default its comment gives.
type Options struct {
	hub.Options
	// Snapshots keep the rooms and messages of the default Rooms and Router across a restart of
	// this node: saved by Close, loaded (and deleted) by NewServer, so that people in a call keep
	// their places. Default: none. Unused with other Rooms, which keep their own.
	Snapshots Snapshots
	// Metrics receives the node's signaling collectors (connections, people and consultations
	// present, messages by type). Default: none.
	Metrics prometheus.Registerer
	// AllowedOrigins are the hosts (host or host:port) whose pages may open a socket: the public
	// URL's and --allowed-origin's. The Host the request came in on is not trusted. Default: none.
	AllowedOrigins []string
	// JoinTimeout is how long a new connection has to send join. Default: 20 s.
	JoinTimeout time.Duration
	// PingInterval is the idle time after which the server pings. Default: 15 s.
	PingInterval time.Duration
	// IdleTimeout is the silence after which a connection is dropped. Default: 45 s.
	IdleTimeout time.Duration
	// WriteTimeout bounds each write to a client. Default: 10 s.
	WriteTimeout time.Duration
	// RateLimit and RateBurst bound the messages a client may send. Default: 50/s, bursts of 200.
	RateLimit rate.Limit
	RateBurst int
	// MaxDropped is how many rate-limited messages close the connection. Default: 500.
	MaxDropped int
}

// Snapshots keep a single node's signaling state across its restart.
type Snapshots interface {
	// LoadSnapshot returns the snapshot saved last and forgets it; nil if there is none.
	LoadSnapshot(ctx context.Context) ([]byte, error)
	// SaveSnapshot keeps b until LoadSnapshot.
	SaveSnapshot(ctx context.Context, b []byte) error
}

// ErrNoGatekeeper is returned by NewServer without Options.Gatekeeper.
var ErrNoGatekeeper = hub.ErrNoGatekeeper

func (o *Options) setDefaults() error {
	if err := o.Options.SetDefaults(); err != nil {
		return err
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.JoinTimeout, 20*time.Second)
	def(&o.PingInterval, 15*time.Second)
	def(&o.IdleTimeout, 45*time.Second)
	def(&o.WriteTimeout, 10*time.Second)
	if o.RateLimit <= 0 {
		o.RateLimit = 50
	}
	if o.RateBurst <= 0 {
		o.RateBurst = 200
	}
	if o.MaxDropped <= 0 {
		o.MaxDropped = 500
	}
	return nil
}

// Server is the signaling endpoint: an http.Handler that upgrades to WebSocket.
type Server struct {
	opts   Options
	hub    *hub.Hub
	m      *metrics
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewServer returns a Server. Close it to disconnect every client.
func NewServer(o Options) (*Server, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{opts: o, ctx: ctx, cancel: cancel, m: newMetrics()}
	err := s.restore(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	if s.hub, err = hub.New(s.opts.Options); err != nil {
		cancel()
		return nil, err
	}
	if o.Metrics != nil {
		if err := s.m.register(o.Metrics, s.hub.Held); err != nil {
			cancel()
			return nil, fmt.Errorf("signaling metrics: %w", err)
		}
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.hub.SweepLoop(ctx)
	}()
	return s, nil
}

// snapshot is what Snapshots keep: the default Rooms' and Router's exports.
type snapshot struct {
	Rooms     json.RawMessage `json:"rooms"`
	Mailboxes json.RawMessage `json:"mailboxes"`
}

// restore loads the snapshot that the node saved when it last stopped.
func (s *Server) restore(ctx context.Context) error {
	mem, local, ok := s.snapshotted()
	if !ok {
		return nil
	}
	b, err := s.opts.Snapshots.LoadSnapshot(ctx)
	if err != nil || b == nil {
		return err
	}
	var snap snapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		return fmt.Errorf("signaling snapshot: %w", err)
	}
	if err := errors.Join(mem.Import(snap.Rooms), local.Import(snap.Mailboxes)); err != nil {
		return fmt.Errorf("signaling snapshot: %w", err)
	}
	ids, _ := mem.IDs(ctx)
	s.opts.Logger.Info("signaling restored from the last stop: people have the grace period to resume", "consultations", len(ids))
	return nil
}

// save keeps the snapshot for the next start.
func (s *Server) save(ctx context.Context) error {
	mem, local, ok := s.snapshotted()
	if !ok {
		return nil
	}
	var snap snapshot
	var err1, err2 error
	snap.Rooms, err1 = mem.Export()
	snap.Mailboxes, err2 = local.Export()
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("signaling snapshot: %w", err)
	}
	if ids, _ := mem.IDs(ctx); len(ids) == 0 {
		return nil
	}
	return s.opts.Snapshots.SaveSnapshot(ctx, encode(snap))
}

func (s *Server) snapshotted() (*rooms.Memory, *route.Local, bool) {
	mem, ok1 := s.opts.Rooms.(*rooms.Memory)
	local, ok2 := s.opts.Router.(*route.Local)
	return mem, local, ok1 && ok2 && s.opts.Snapshots != nil
}

// ServeHTTP checks the Origin, upgrades the request and runs the client until it goes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !origin.Allowed(r, s.opts.AllowedOrigins) {
		s.opts.Logger.Warn("websocket refused: origin not allowed", "origin", r.Header.Get("Origin"), "host", r.Host)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{
			"code": string(errcode.BadOrigin), "message": "This page may not open a consultation on this server."}})
		return
	}
	// The Origin was checked above, with the server's own rules.
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return // Accept has answered the client
	}
	ws.SetReadLimit(protocol.MaxFrameSize)
	s.wg.Add(1)
	defer s.wg.Done()
	s.m.connections.Add(1)
	defer s.m.connections.Add(-1)
	c := newConn(s, ws)
	c.serve(s.ctx)
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("signal: encode: " + err.Error()) // our own types always encode
	}
	return b
}

// opTimeout bounds the calls that come from outside a connection (HTTP handlers, alerts).
const opTimeout = 10 * time.Second

func (s *Server) opContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, opTimeout)
}

// EndConsultation disconnects everyone in a consultation that has just been ended.
func (s *Server) EndConsultation(id string) {
	ctx, cancel := s.opContext()
	defer cancel()
	s.hub.End(ctx, id)
}

// Present reports whether a provider or patient is in the call of a consultation, on any node: a
// device joins only a consultation someone is in.
func (s *Server) Present(consultationID string) bool {
	ctx, cancel := s.opContext()
	defer cancel()
	return s.hub.Present(ctx, consultationID)
}

// SendAlert tells the providers and clinicians in the call of a consultation about an alert (its JSON as the HTTP API
// shows it).
func (s *Server) SendAlert(consultationID string, alert json.RawMessage) {
	ctx, cancel := s.opContext()
	defer cancel()
	s.hub.SendAdmitters(ctx, consultationID, encode(protocol.Alert{Type: protocol.TypeAlert, Alert: alert}))
}

// Kick disconnects, from every consultation, whoever joined with a link issued to subject (a device
// that has just been revoked).
func (s *Server) Kick(subject string) {
	ctx, cancel := s.opContext()
	defer cancel()
	s.hub.Kick(ctx, subject)
}

// RemoveInvited removes from a consultation whoever joined with the invitation subject, which has
// just been revoked: they are told "removed", the others "peer_left".
func (s *Server) RemoveInvited(consultationID, subject string) {
	ctx, cancel := s.opContext()
	defer cancel()
	s.hub.RemoveSubject(ctx, consultationID, subject)
}

// Close disconnects every client (they will resume, here after a restart or on another node), waits
// for their loops to finish, and saves the snapshot if there are Snapshots.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	s.hub.Shutdown(ctx)
	s.cancel()
	s.wg.Wait()
	return s.save(ctx)
}
