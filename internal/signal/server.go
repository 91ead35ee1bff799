// Package signal is telemed's signaling server: one loop per WebSocket client, and the hub that keeps
// each consultation's waiting room and relays offers, answers and ICE candidates between its admitted
// members (docs/signaling.md). Media never passes through it. Package route delivers its messages.
package signal

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/origin"
	"github.com/telemed/telemed/internal/signal/route"
	"github.com/telemed/telemed/protocol"
)

// Options configure a Server. Only Gatekeeper is required; every other field has the default its
// comment gives.
type Options struct {
	// Gatekeeper checks the link in each join. Required.
	Gatekeeper Gatekeeper
	// Audit records joins, admissions and departures. Default: none.
	Audit func(ctx context.Context, e consult.AuditEvent)
	// ICEServers returns the ICE servers handed to a participant in its welcome, with fresh
	// credentials each time (a resumed session gets new ones). Default: none, which suits peers on
	// one network.
	ICEServers func(participantID string) []protocol.ICEServer
	// ICETransportPolicy is told to every client: "all" (default) or "relay", which keeps media on
	// TURN so that neither side learns the other's IP address.
	ICETransportPolicy string
	// Router carries messages to participants. Default: a route.Local.
	Router route.Router
	// Logger for connection events. Default: slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// AllowedOrigins are the hosts (host or host:port) whose pages may open a socket, besides the Host
	// the request came in on. Default: none.
	AllowedOrigins []string
	// MaxParticipants is how many people a call holds, devices not counted. Default:
	// consult.DefaultMaxPeople (4).
	MaxParticipants int
	// Removed makes a removal last: it stops the link of the person a provider or clinician removed
	// (their invitation, or the consultation's patient link). Default: none, so the link would join
	// again once this node forgets the removal.
	Removed func(ctx context.Context, consultationID string, role consult.Role, subject string) error
	// ResumeGrace is how long a dropped participant keeps its place. Default: 30 s.
	ResumeGrace time.Duration
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

// ErrNoGatekeeper is returned by NewServer without Options.Gatekeeper.
var ErrNoGatekeeper = errors.New("signal: Options.Gatekeeper is required")

func (o *Options) setDefaults() error {
	if o.Gatekeeper == nil {
		return ErrNoGatekeeper
	}
	if o.Audit == nil {
		o.Audit = func(context.Context, consult.AuditEvent) {}
	}
	if o.Removed == nil {
		o.Removed = func(context.Context, string, consult.Role, string) error { return nil }
	}
	if o.ICEServers == nil {
		o.ICEServers = func(string) []protocol.ICEServer { return []protocol.ICEServer{} }
	}
	if o.ICETransportPolicy == "" {
		o.ICETransportPolicy = "all"
	}
	if o.Router == nil {
		o.Router = route.NewLocal()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.ResumeGrace, 30*time.Second)
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
	hub    *hub
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
	s := &Server{opts: o, ctx: ctx, cancel: cancel}
	s.hub = newHub(&s.opts)
	return s, nil
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
	c := newConn(s, ws)
	c.serve(s.ctx)
}

// EndConsultation disconnects everyone in a consultation that has just been ended.
func (s *Server) EndConsultation(id string) { s.hub.end(id) }

// Present reports whether a provider or patient is in the call of a consultation on this node: a
// device joins only a consultation someone is in.
func (s *Server) Present(consultationID string) bool { return s.hub.present(consultationID) }

// SendAlert tells the providers and clinicians in the call of a consultation about an alert (its JSON as the HTTP API
// shows it).
func (s *Server) SendAlert(consultationID string, alert json.RawMessage) {
	s.hub.sendAdmitters(consultationID, encode(protocol.Alert{Type: protocol.TypeAlert, Alert: alert}))
}

// Kick disconnects, from every consultation on this node, whoever joined with a link issued to
// subject (a device that has just been revoked).
func (s *Server) Kick(subject string) { s.hub.kick(subject) }

// RemoveInvited removes from a consultation on this node whoever joined with the invitation
// subject, which has just been revoked: they are told "removed", the others "peer_left".
func (s *Server) RemoveInvited(consultationID, subject string) {
	s.hub.removeSubject(context.Background(), consultationID, subject)
}

// Close disconnects every client and waits for their loops to finish.
func (s *Server) Close() error {
	s.hub.shutdown()
	s.cancel()
	s.wg.Wait()
	return nil
}
