package hub

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/auth"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/signal/rooms"
	"github.com/telemed/telemed/internal/signal/route"
	"github.com/telemed/telemed/protocol"
)

// Ticket is what a valid link entitles its holder to, as the Gatekeeper decides.
type Ticket struct {
	ConsultationID string
	Title          string
	ProviderName   string
	Role           consult.Role
	// Expired is set for an expired link: its holder may only resume a place it already has.
	Expired bool
	// Subject is the one holder a link was issued to (an invitation's or a device's id), or "".
	Subject string
	// Name is the name the link was issued for (an invitation's), shown instead of the one the
	// holder types; "" for links that carry none.
	Name string
}

// Gatekeeper checks a link token for a consultation. It returns consult.ErrBadToken,
// consult.ErrLinkExpired, consult.ErrWrongConsultation or consult.ErrEnded for links that do not admit,
// and an error wrapping ErrUnavailable when what it checks links against does not answer.
type Gatekeeper func(ctx context.Context, consultationID, token string) (Ticket, error)

// ErrUnavailable is wrapped in a Gatekeeper's error when it could not check a link because the
// records it checks them against (the store) do not answer: the joiner is told to try again in a
// moment, as for Redis, rather than that the server failed.
var ErrUnavailable = errors.New("the links cannot be checked: the store does not answer")

// Place is a participant's place in a consultation, as a connection of this node holds it. The place itself (its
// state in the room, its resume secret) is in the rooms Store, shared with the other nodes.
type Place struct {
	id      string
	roomID  string
	role    consult.Role
	subject string // the device id of a device, the invitation id of an invitee; ""
	name    string
	conn    route.Sender
	connKey string      // names conn in rooms.Person.Conn
	lost    atomic.Bool // conn is gone: the place is not this node's to claim back
	log     *slog.Logger
}

// Options configure a Hub. Only Gatekeeper is required; every other field has the default its
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
	// Rooms keeps the consultations' rooms; nodes that share Rooms and Router share consultations.
	// Default: a rooms.Memory.
	Rooms rooms.Store
	// Node names this node among those sharing Rooms. Default: a random name.
	Node string
	// NodeAlive reports whether a node sharing Rooms still runs: the places held by a node that is
	// gone are kept for ResumeGrace, then taken out. Default: only this node runs.
	NodeAlive func(ctx context.Context, node string) (bool, error)
	// Logger for connection events. Default: slog.Default().
	Logger *slog.Logger
	// Now is the clock of arrivals. Default: time.Now.
	Now func() time.Time
	// MaxParticipants is how many people a call holds, devices not counted. Default:
	// consult.DefaultMaxPeople (4).
	MaxParticipants int
	// Removed makes a removal last: it stops the link of the person a provider or clinician removed
	// (their invitation, or the consultation's patient link). Default: none, so the link would join
	// again once the room is gone.
	Removed func(ctx context.Context, consultationID string, role consult.Role, subject string) error
	// ResumeGrace is how long a dropped participant keeps its place. Default: 30 s.
	ResumeGrace time.Duration
}

// ErrNoGatekeeper is returned by New without Options.Gatekeeper.
var ErrNoGatekeeper = errors.New("signal: Options.Gatekeeper is required")

// SetDefaults fills in the defaults of the fields left zero.
func (o *Options) SetDefaults() error {
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
	if o.Rooms == nil {
		o.Rooms = rooms.NewMemory()
	}
	if o.Node == "" {
		o.Node = auth.NewID("n_")
	}
	if o.NodeAlive == nil {
		self := o.Node
		o.NodeAlive = func(_ context.Context, node string) (bool, error) { return node == self, nil }
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ResumeGrace <= 0 {
		o.ResumeGrace = 30 * time.Second
	}
	return nil
}

// Hub keeps this node's side of the consultations: which of its connections hold which place, and
// the timers of places whose connection was lost here. The rooms themselves are in Options.Rooms;
// every change to one is made inside Rooms.Update, and the messages it causes are sent there too,
// so that they reach each participant in the order of the changes.
type Hub struct {
	o      Options
	router route.Router
	rooms  rooms.Store
	serial atomic.Uint64

	mu    sync.Mutex
	local map[route.Sender]*Place
	keys  map[route.Sender]string // this node's connections that tried to join, by their name
	named map[string]bool         // the names in keys
	grace map[string]*time.Timer  // by participant id: places whose connection was lost on this node
	// revoked are the devices disconnected for good on this node: a join the gatekeeper let
	// through just before the revocation must not get in after it.
	revoked map[string]bool
	closed  bool
}

// New returns a Hub. Run SweepLoop beside it, and Shutdown it when the node stops.
func New(o Options) (*Hub, error) {
	if err := o.SetDefaults(); err != nil {
		return nil, err
	}
	return &Hub{o: o, router: o.Router, rooms: o.Rooms, local: make(map[route.Sender]*Place), keys: make(map[route.Sender]string), named: make(map[string]bool),
		grace: make(map[string]*time.Timer), revoked: make(map[string]bool)}, nil
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("signal: encode: " + err.Error()) // our own types always encode
	}
	return b
}

// failed is the error a client is told when a change to a room did not happen: the refusal the
// change returned, or that the shared state could not be reached.
func (h *Hub) failed(op string, err error) *protocol.Error {
	var refused *protocol.Error
	if errors.As(err, &refused) {
		return refused
	}
	h.o.Logger.Error(op+": the rooms could not be reached", "err", err)
	return &protocol.Error{Code: errcode.Unavailable, Message: "The server cannot reach the state of consultations just now. Please try again in a moment."}
}

var errShuttingDown = &protocol.Error{Code: errcode.Unavailable, Message: "The server is shutting down; connect again."}

func (h *Hub) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

// held records that p's place is held by a connection of this node, and that it is not lost.
func (h *Hub) held(p *Place) {
	p.log = h.o.Logger.With("consultation", p.roomID, "participant", p.id, "role", p.role)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.local[p.conn] = p
	if t := h.grace[p.id]; t != nil {
		t.Stop()
		delete(h.grace, p.id)
	}
}

// Gone forgets c, whose loop has ended.
func (h *Hub) Gone(c route.Sender) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.local, c)
	delete(h.named, h.keys[c])
	delete(h.keys, c)
}

// Held counts the places held by connections of this node, and the consultations they are in.
func (h *Hub) Held() (places, consultations int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	in := map[string]bool{}
	for _, p := range h.local {
		in[p.roomID] = true
	}
	return len(h.local), len(in)
}

// connKey names c in rooms.Person.Conn: this node, and c's number on it.
func (h *Hub) connKey(c route.Sender) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	k, ok := h.keys[c]
	if !ok {
		k = h.o.Node + " " + strconv.FormatUint(h.serial.Add(1), 10)
		h.keys[c], h.named[k] = k, true
	}
	return k
}

// heldPlaces are the places held by this node's connections that are not lost, by participant.
func (h *Hub) heldPlaces() map[string]*Place {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]*Place, len(h.local))
	if h.closed {
		return out // shutdown marked them lost on purpose
	}
	for _, p := range h.local {
		if !p.lost.Load() {
			out[p.id] = p
		}
	}
	return out
}

// open reports whether key names an open connection of this node. A key is named before a room
// may hold it, so a room read before the call cannot hold a key too new for it.
func (h *Hub) open(key string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.named[key]
}

// ID is the participant's id.
func (p *Place) ID() string { return p.id }

// Hangup takes p out of its consultation, unless another connection holds the place now: its client
// closed the socket in order (a page reload, a closed tab), which is leaving.
func (h *Hub) Hangup(ctx context.Context, p *Place) {
	h.leaveIf(ctx, p.roomID, p.id, protocol.ReasonLeft, func(pp *rooms.Person) bool { return pp.Conn == p.connKey })
}

// refused is what a join is told when the gatekeeper did not let its link in; a failure to check
// the link, rather than a refusal, goes to the log too.
func (h *Hub) refused(consultationID string, err error) *protocol.Error {
	perr := joinError(err)
	switch perr.Code {
	case errcode.Internal:
		h.o.Logger.Error("join: gatekeeper failed", "consultation", consultationID, "err", err)
	case errcode.Unavailable:
		h.o.Logger.Warn("join: the link could not be checked", "consultation", consultationID, "err", err)
	}
	return perr
}

// Join admits a connection into a consultation, or resumes the place it had. A returned error is fatal
// for the connection.
func (h *Hub) Join(ctx context.Context, c route.Sender, m protocol.Message) (*Place, *protocol.Error) {
	t, err := h.o.Gatekeeper(ctx, m.Consultation, m.Token)
	if err != nil && !errors.Is(err, consult.ErrLinkExpired) {
		return nil, h.refused(m.Consultation, err)
	}
	if (err != nil || t.Expired) && m.Resume == "" {
		return nil, joinError(consult.ErrLinkExpired)
	}
	if t.ConsultationID == "" {
		t.ConsultationID = m.Consultation // an expired link's ticket may carry nothing else
	}
	if h.isClosed() {
		return nil, errShuttingDown
	}
	if m.Resume != "" {
		return h.resume(ctx, c, t, m.Resume, m.LastSeq)
	}
	name := m.Name
	if t.Role == consult.RoleProvider {
		name = t.ProviderName
	} else if t.Name != "" {
		name = t.Name
	} else if name == "" {
		return nil, &protocol.Error{Code: errcode.BadField, Message: "Please enter your name before joining."}
	}
	h.mu.Lock()
	revoked := t.Role == consult.RoleDevice && h.revoked[t.Subject]
	h.mu.Unlock()
	if revoked {
		return nil, kickedError(t.Role)
	}

	p := &Place{id: auth.NewID("p_"), roomID: t.ConsultationID, role: t.Role, subject: t.Subject, name: name,
		conn: c, connKey: h.connKey(c)}
	var member consult.Member
	err = h.update(ctx, p.roomID, func(r *rooms.Room, rt route.Router) error {
		if r.State == nil {
			r.Title, r.ProviderName = t.Title, t.ProviderName
			r.State = consult.NewRoom(h.o.MaxParticipants)
		}
		if r.Stopped[linkKey(r.ID, t.Role, t.Subject)] {
			return kickedError(t.Role)
		}
		var err error
		if member, err = r.State.Add(consult.Member{ID: p.id, Role: p.role, Name: p.name, Since: h.o.Now()}); err != nil {
			return addError(err, r.State.MaxPeople())
		}
		r.People[p.id] = &rooms.Person{Role: p.role, Subject: p.subject, Name: p.name,
			Resume: auth.NewID("r_") + auth.NewID(""), Conn: p.connKey}
		return rt.Attach(p.id, c, encode(h.welcome(r, p.id)), 0)
	})
	if err != nil {
		h.abandon(ctx, p, err)
		return nil, h.failed("join", err)
	}
	h.held(p)

	// The join is written to the audit trail before the others learn of it (outside the room's
	// lock: it is a database write), so that the trail can never show a patient admitted before
	// they joined.
	p.log.Info("joined", "state", stateOf(member))
	h.o.Audit(ctx, consult.AuditEvent{Actor: p.id, Action: consult.AuditJoined, ConsultationID: p.roomID,
		Detail: string(p.role) + " " + stateOf(member)})

	err = h.update(ctx, p.roomID, func(r *rooms.Room, rt route.Router) error {
		// Unless gone meanwhile, or admitted meanwhile (the admission announced them already).
		if now, ok := h.member(r, p.id); ok && now.Admitted() == member.Admitted() {
			if member.Admitted() {
				h.announceJoined(rt, r, p.id)
			} else {
				h.sendLobby(rt, r)
			}
		}
		return nil
	})
	if err != nil {
		p.log.Error("join: the others could not be told", "err", err)
	}
	return p, nil
}

// abandon marks lost a place that a join or resume took but could not hand to its connection (the
// router did not answer): the grace period then runs, as for any lost connection. A refusal took
// no place.
func (h *Hub) abandon(ctx context.Context, p *Place, err error) {
	var refused *protocol.Error
	if p == nil || errors.As(err, &refused) {
		return
	}
	p.log = h.o.Logger.With("consultation", p.roomID, "participant", p.id, "role", p.role)
	h.Disconnected(ctx, p, p.conn)
}

// member is a participant's place in r, if r has it.
func (h *Hub) member(r *rooms.Room, id string) (consult.Member, bool) {
	if r == nil || r.State == nil {
		return consult.Member{}, false
	}
	return r.State.Member(id)
}

func stateOf(m consult.Member) string {
	if m.Admitted() {
		return protocol.StateAdmitted
	}
	return protocol.StateWaiting
}

var errBadResume = &protocol.Error{Code: errcode.BadResume, Message: "Your earlier place in this consultation has expired. Join again."}

func (h *Hub) resume(ctx context.Context, c route.Sender, t Ticket, secret string, lastSeq uint64) (*Place, *protocol.Error) {
	var p *Place
	key := h.connKey(c)
	err := h.update(ctx, t.ConsultationID, func(r *rooms.Room, rt route.Router) error {
		if r.Stopped[linkKey(t.ConsultationID, t.Role, t.Subject)] {
			return kickedError(t.Role)
		}
		var id string
		var pp *rooms.Person
		for pid, x := range r.People {
			if x.Resume == secret {
				id, pp = pid, x
			}
		}
		if r.State == nil || pp == nil || pp.Role != t.Role || pp.Subject != t.Subject {
			return errBadResume
		}
		p = &Place{id: id, roomID: r.ID, role: pp.Role, subject: pp.Subject, name: pp.Name, conn: c, connKey: key}
		pp.Conn, pp.LostAt = p.connKey, time.Time{}
		// Attach closes the connection that held the place before, on whichever node: it has not
		// noticed it is dead yet, and must not take the place down with it.
		return rt.Attach(id, c, encode(h.welcome(r, id)), lastSeq)
	})
	if err != nil {
		h.abandon(ctx, p, err)
		return nil, h.failed("resume", err)
	}
	h.held(p)
	p.log.Info("resumed")
	return p, nil
}

func (h *Hub) welcome(r *rooms.Room, id string) protocol.Welcome {
	me, _ := r.State.Member(id)
	w := protocol.Welcome{
		Type: protocol.TypeWelcome, Version: protocol.ProtocolVersion,
		You:          protocol.You{ID: id, Role: string(me.Role), Name: me.Name, CanShare: me.CanShare},
		State:        stateOf(me),
		Consultation: protocol.ConsultationInfo{ID: r.ID, Title: r.Title, ProviderName: r.ProviderName, MaxParticipants: r.State.MaxPeople()},
		Peers:        []protocol.Peer{},
		Waiting:      []protocol.Waiting{},
		Resume:       r.People[id].Resume,
		ICEServers:   h.o.ICEServers(id),
		ICEPolicy:    h.o.ICETransportPolicy,
	}
	if me.Admitted() {
		w.Peers = peers(r.State, id)
	}
	if me.Role.Admits() && me.Admitted() {
		w.Waiting = waitingList(r.State)
	}
	return w
}

// peers lists the admitted members other than id, with id's politeness towards each.
func peers(s *consult.Room, id string) []protocol.Peer {
	me, _ := s.Member(id)
	out := []protocol.Peer{}
	for _, m := range s.Admitted() {
		if m.ID != id && consult.Connects(me.Role, m.Role) {
			out = append(out, peerOf(m, s.Polite(id, m.ID)))
		}
	}
	return out
}

func waitingList(s *consult.Room) []protocol.Waiting {
	out := []protocol.Waiting{}
	for _, m := range s.Waiting() {
		out = append(out, protocol.Waiting{ID: m.ID, Role: string(m.Role), Name: m.Name, Since: m.Since.UTC()})
	}
	return out
}

func (h *Hub) sendLobby(rt route.Router, r *rooms.Room) {
	msg := encode(protocol.Lobby{Type: protocol.TypeLobby, Waiting: waitingList(r.State)})
	for _, id := range r.State.Admitters() {
		rt.Send(id, msg)
	}
}

// announceJoined tells the other admitted members that id is in the call: those admitted before it.
// Those admitted after it (while a join was between its two updates) had it in their welcome or
// admission already.
func (h *Hub) announceJoined(rt route.Router, r *rooms.Room, id string) {
	me, _ := r.State.Member(id)
	for _, m := range r.State.Admitted() {
		if m.ID == id || !consult.Connects(me.Role, m.Role) || !r.State.Polite(m.ID, id) {
			continue
		}
		rt.Send(m.ID, encode(protocol.PeerJoined{Type: protocol.TypePeerJoined, Peer: peerOf(me, r.State.Polite(m.ID, id))}))
	}
}

// errGone is what a participant whose place has been taken away meanwhile is told.
var errGone = &protocol.Error{Code: errcode.NotAdmitted, Message: "Your place in this consultation has ended. Join again."}

// Admit lets a waiting patient into the call.
func (h *Hub) Admit(ctx context.Context, p *Place, who string) *protocol.Error {
	var target consult.Member
	err := h.update(ctx, p.roomID, func(r *rooms.Room, rt route.Router) error {
		if r.State == nil {
			return errGone
		}
		var err error
		if target, err = r.State.Admit(p.id, who); err != nil {
			return roomError(err)
		}
		// The others first: they answer the newcomer's offer, so they should hear of it first.
		h.announceJoined(rt, r, who)
		rt.Send(who, encode(protocol.Admitted{Type: protocol.TypeAdmitted, Peers: peers(r.State, who)}))
		h.sendLobby(rt, r)
		return nil
	})
	if err != nil {
		return h.failed("admit", err)
	}
	p.log.Info("admitted", "who", target.ID, "as", target.Role)
	h.o.Audit(ctx, consult.AuditEvent{Actor: p.id, Action: consult.AuditAdmitted, ConsultationID: p.roomID, Detail: target.ID})
	return nil
}

// Decline turns a waiting patient away.
func (h *Hub) Decline(ctx context.Context, p *Place, who string) *protocol.Error {
	err := h.update(ctx, p.roomID, func(r *rooms.Room, rt route.Router) error {
		if r.State == nil {
			return errGone
		}
		if _, err := r.State.Decline(p.id, who); err != nil {
			return roomError(err)
		}
		rt.Send(who, encode(protocol.Envelope{Type: protocol.TypeDeclined}))
		rt.Close(who, route.CloseNormal, "declined")
		h.forget(rt, r, who)
		h.sendLobby(rt, r)
		return nil
	})
	if err != nil {
		return h.failed("decline", err)
	}
	p.log.Info("declined", "who", who)
	h.o.Audit(ctx, consult.AuditEvent{Actor: p.id, Action: consult.AuditDeclined, ConsultationID: p.roomID, Detail: who})
	return nil
}

// Relay forwards an offer, answer or candidate between two admitted members.
func (h *Hub) Relay(ctx context.Context, p *Place, m protocol.Message) *protocol.Error {
	to := m.To
	m.To, m.From, m.ID = "", p.id, nil
	var refused *protocol.Error
	err := h.rooms.View(ctx, p.roomID, func(r *rooms.Room) {
		if r == nil || r.State == nil {
			refused = errGone
		} else if err := r.State.CanSignal(p.id, to); err != nil {
			refused = roomError(err)
		}
	})
	if err != nil {
		return h.failed("relay", err)
	}
	if refused != nil {
		return refused
	}
	h.router.Send(to, encode(m))
	return nil
}

// forget takes id out of r, and drops what the router kept for it.
func (h *Hub) forget(rt route.Router, r *rooms.Room, id string) {
	r.State.Remove(id)
	delete(r.People, id)
	rt.Forget(id)
}

// takeOut forgets id, who is already out of r.State, and tells the others: peer_left to the call
// if it was in it, the waiting list to the admitters if it waited.
func (h *Hub) takeOut(rt route.Router, r *rooms.Room, id string, wasAdmitted bool, reason string) {
	h.forget(rt, r, id)
	if wasAdmitted {
		left := encode(protocol.PeerLeft{Type: protocol.TypePeerLeft, Peer: id, Reason: reason})
		for _, o := range r.State.Admitted() {
			rt.Send(o.ID, left)
		}
	} else {
		h.sendLobby(rt, r)
	}
}

// Leave takes p out of its consultation for good.
func (h *Hub) Leave(ctx context.Context, p *Place, reason string) {
	h.leaveIf(ctx, p.roomID, p.id, reason, nil)
}

// leaveIf is leave if cond, checked on the room's current state, still holds: a resume may have
// come in between deciding to leave and leaving.
func (h *Hub) leaveIf(ctx context.Context, roomID, id, reason string, cond func(*rooms.Person) bool) {
	left := false
	err := h.update(ctx, roomID, func(r *rooms.Room, rt route.Router) error {
		pp := r.People[id]
		m, ok := h.member(r, id)
		if !ok || pp == nil || (cond != nil && !cond(pp)) {
			return nil // already gone, or back
		}
		r.State.Remove(id)
		h.takeOut(rt, r, id, m.Admitted(), reason)
		left = true
		return nil
	})
	h.mu.Lock()
	if t := h.grace[id]; t != nil {
		t.Stop()
		delete(h.grace, id)
	}
	h.mu.Unlock()
	if err != nil {
		h.o.Logger.Error("leave: the rooms could not be reached", "consultation", roomID, "participant", id, "err", err)
		return
	}
	if left {
		h.o.Logger.Info("left", "consultation", roomID, "participant", id, "reason", reason)
		h.o.Audit(ctx, consult.AuditEvent{Actor: id, Action: consult.AuditLeft, ConsultationID: roomID, Detail: reason})
	}
}

// Disconnected is called when c, p's connection, is gone without a leave. p keeps its place for the
// grace period, so that a client whose network blipped, or whose node stopped, can resume.
func (h *Hub) Disconnected(ctx context.Context, p *Place, c route.Sender) {
	if h.isClosed() {
		return // shutdown has marked the places lost already
	}
	p.lost.Store(true)
	lost := time.Now()
	kept := false
	err := h.update(ctx, p.roomID, func(r *rooms.Room, rt route.Router) error {
		if pp := r.People[p.id]; pp != nil && pp.Conn == p.connKey {
			pp.Conn, pp.LostAt = "", lost
			rt.Detach(p.id, c)
			kept = true
		}
		return nil // replaced by a newer connection, or already gone
	})
	if err != nil || !kept {
		return // any node's sweep will see the place lost once this node's heartbeat stops
	}
	p.log.Info("connection lost; keeping the place", "grace", h.o.ResumeGrace)
	h.mu.Lock()
	defer h.mu.Unlock()
	if old := h.grace[p.id]; old != nil {
		old.Stop()
	}
	h.grace[p.id] = time.AfterFunc(h.o.ResumeGrace, func() {
		h.leaveIf(context.Background(), p.roomID, p.id, protocol.ReasonDisconnected, func(pp *rooms.Person) bool {
			return pp.Conn == "" && pp.LostAt.Equal(lost)
		})
	})
}

// Present reports whether a person is in the call of a consultation.
func (h *Hub) Present(ctx context.Context, id string) bool {
	in := false
	err := h.rooms.View(ctx, id, func(r *rooms.Room) { in = r != nil && r.State != nil && r.State.Present() })
	return err == nil && in
}

// SendAdmitters sends msg to the providers and clinicians in the call of a consultation.
func (h *Hub) SendAdmitters(ctx context.Context, id string, msg []byte) {
	var to []string
	err := h.rooms.View(ctx, id, func(r *rooms.Room) {
		if r != nil && r.State != nil {
			to = r.State.Admitters()
		}
	})
	if err != nil {
		h.o.Logger.Error("alert: the rooms could not be reached", "consultation", id, "err", err)
	}
	for _, pid := range to {
		h.router.Send(pid, msg)
	}
}
