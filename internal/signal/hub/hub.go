package signal

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/auth"
	"github.com/telemed/telemed/internal/consult"
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
// consult.ErrLinkExpired, consult.ErrWrongConsultation or consult.ErrEnded for links that do not admit.
type Gatekeeper func(ctx context.Context, consultationID, token string) (Ticket, error)

// participant is one person (or program) in a consultation, across reconnections.
type participant struct {
	id      string
	role    consult.Role
	subject string // the device id of a device; ""
	name    string
	resume  string
	room    *room
	conn    *conn       // nil while disconnected
	grace   *time.Timer // runs while disconnected
	log     *slog.Logger
}

type room struct {
	id           string
	title        string
	providerName string
	state        *consult.Room
	members      map[string]*participant
}

// hub keeps the rooms. Its lock guards rooms, members and participants; it is never held during I/O
// other than Router.Send, which only queues.
type hub struct {
	opts   *Options
	router route.Router

	mu       sync.Mutex
	rooms    map[string]*room
	byResume map[string]*participant
	// kicked are the links disconnected for good (linkKey: a revoked device or invitation, a removed
	// patient): a join the gatekeeper let through just before must not get in after it.
	kicked map[string]struct{}
	closed bool
}

func newHub(o *Options) *hub {
	return &hub{opts: o, router: o.Router, rooms: make(map[string]*room), byResume: make(map[string]*participant),
		kicked: make(map[string]struct{})}
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("signal: encode: " + err.Error()) // our own types always encode
	}
	return b
}

func joinError(err error) *protocol.Error {
	switch {
	case errors.Is(err, consult.ErrBadToken):
		return &protocol.Error{Code: errcode.BadToken, Message: "This link is not valid. Check that it was copied whole, or ask the clinic for a new one."}
	case errors.Is(err, consult.ErrLinkExpired):
		return &protocol.Error{Code: errcode.LinkExpired, Message: "This link has expired. Ask your clinic for a new one."}
	case errors.Is(err, consult.ErrWrongConsultation):
		return &protocol.Error{Code: errcode.WrongConsultation, Message: "This link is not for this consultation, or the consultation does not exist."}
	case errors.Is(err, consult.ErrEnded):
		return &protocol.Error{Code: errcode.Ended, Message: "This consultation has ended."}
	case errors.Is(err, consult.ErrRemoved):
		return kickedError(consult.RoleGuest)
	case errors.Is(err, consult.ErrDeviceRevoked):
		return &protocol.Error{Code: errcode.BadToken, Message: "This device has been revoked, or is not enrolled to this consultation's patient."}
	default:
		return &protocol.Error{Code: errcode.Internal, Message: "The server could not check this link. Please try again in a moment."}
	}
}

// join admits a connection into a consultation, or resumes the place it had. A returned error is fatal
// for the connection.
func (h *hub) join(ctx context.Context, c *conn, m protocol.Message) (*participant, *protocol.Error) {
	t, err := h.opts.Gatekeeper(ctx, m.Consultation, m.Token)
	if err != nil && !errors.Is(err, consult.ErrLinkExpired) {
		if perr := joinError(err); perr.Code == errcode.Internal {
			h.opts.Logger.Error("join: gatekeeper failed", "consultation", m.Consultation, "err", err)
		}
		return nil, joinError(err)
	}
	if err != nil || t.Expired {
		if m.Resume == "" {
			return nil, joinError(consult.ErrLinkExpired)
		}
	}
	if m.Resume != "" {
		return h.resume(c, t, m.Resume, m.LastSeq)
	}
	name := m.Name
	if t.Role == consult.RoleProvider {
		name = t.ProviderName
	} else if t.Name != "" {
		name = t.Name
	} else if name == "" {
		return nil, &protocol.Error{Code: errcode.BadField, Message: "Please enter your name before joining."}
	}

	p := &participant{id: auth.NewID("p_"), role: t.Role, subject: t.Subject, name: name, resume: auth.NewID("r_") + auth.NewID("")}
	now := h.opts.Now()

	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, &protocol.Error{Code: errcode.Internal, Message: "The server is shutting down."}
	}
	if _, gone := h.kicked[linkKey(t.ConsultationID, t.Role, t.Subject)]; gone {
		h.mu.Unlock()
		return nil, kickedError(t.Role)
	}
	r := h.rooms[t.ConsultationID]
	if r == nil {
		r = &room{id: t.ConsultationID, title: t.Title, providerName: t.ProviderName,
			state: consult.NewRoom(h.opts.MaxParticipants), members: make(map[string]*participant)}
		h.rooms[r.id] = r
	}
	member, err := r.state.Add(consult.Member{ID: p.id, Role: p.role, Name: p.name, Since: now})
	if err != nil {
		if r.state.Len() == 0 {
			delete(h.rooms, r.id)
		}
		h.mu.Unlock()
		return nil, addError(err, r.state.MaxPeople())
	}
	p.room, p.conn = r, c
	p.log = h.opts.Logger.With("consultation", r.id, "participant", p.id, "role", p.role)
	r.members[p.id] = p
	h.byResume[p.resume] = p
	h.router.Attach(p.id, c, encode(h.welcomeLocked(p)), 0)
	h.mu.Unlock()

	// The join is written to the audit trail before the others learn of it (outside the lock: it is a
	// database write), so that the trail can never show a patient admitted before they joined.
	p.log.Info("joined", "state", stateOf(member))
	h.opts.Audit(ctx, consult.AuditEvent{Actor: p.id, Action: consult.AuditJoined, ConsultationID: r.id,
		Detail: string(p.role) + " " + stateOf(member)})

	h.mu.Lock()
	// Unless gone meanwhile, or admitted meanwhile (the admission announced them already).
	if now, ok := r.state.Member(p.id); ok && r.members[p.id] == p && now.Admitted() == member.Admitted() {
		if member.Admitted() {
			h.announceJoinedLocked(p)
		} else {
			h.sendLobbyLocked(r)
		}
	}
	h.mu.Unlock()
	return p, nil
}

func stateOf(m consult.Member) string {
	if m.Admitted() {
		return protocol.StateAdmitted
	}
	return protocol.StateWaiting
}

func (h *hub) resume(c *conn, t Ticket, secret string, lastSeq uint64) (*participant, *protocol.Error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.byResume[secret]
	if _, gone := h.kicked[linkKey(t.ConsultationID, t.Role, t.Subject)]; gone {
		return nil, kickedError(t.Role)
	}
	if h.closed || p == nil || p.room.id != t.ConsultationID || p.role != t.Role || p.subject != t.Subject {
		return nil, &protocol.Error{Code: errcode.BadResume, Message: "Your earlier place in this consultation has expired. Join again."}
	}
	if p.grace != nil {
		p.grace.Stop()
		p.grace = nil
	}
	old := p.conn
	p.conn = c
	if old != nil {
		// The old socket has not noticed it is dead yet; it must not take the place down with it.
		old.close(closePolicy, "replaced by a newer connection")
	}
	h.router.Attach(p.id, c, encode(h.welcomeLocked(p)), lastSeq)
	p.log.Info("resumed")
	return p, nil
}

func (h *hub) welcomeLocked(p *participant) protocol.Welcome {
	r := p.room
	me, _ := r.state.Member(p.id)
	w := protocol.Welcome{
		Type: protocol.TypeWelcome, Version: protocol.ProtocolVersion,
		You:          protocol.You{ID: p.id, Role: string(p.role), Name: p.name, CanShare: me.CanShare},
		State:        stateOf(me),
		Consultation: protocol.ConsultationInfo{ID: r.id, Title: r.title, ProviderName: r.providerName, MaxParticipants: r.state.MaxPeople()},
		Peers:        []protocol.Peer{},
		Waiting:      []protocol.Waiting{},
		Resume:       p.resume,
		ICEServers:   h.opts.ICEServers(p.id),
		ICEPolicy:    h.opts.ICETransportPolicy,
	}
	if me.Admitted() {
		w.Peers = h.peersLocked(p)
	}
	if p.role.Admits() && me.Admitted() {
		w.Waiting = waitingList(r)
	}
	return w
}

// peersLocked lists the admitted members other than p, with p's politeness towards each.
func (h *hub) peersLocked(p *participant) []protocol.Peer {
	peers := []protocol.Peer{}
	for _, m := range p.room.state.Admitted() {
		if m.ID != p.id && consult.Connects(p.role, m.Role) {
			peers = append(peers, peerOf(m, p.room.state.Polite(p.id, m.ID)))
		}
	}
	return peers
}

func waitingList(r *room) []protocol.Waiting {
	out := []protocol.Waiting{}
	for _, m := range r.state.Waiting() {
		out = append(out, protocol.Waiting{ID: m.ID, Role: string(m.Role), Name: m.Name, Since: m.Since.UTC()})
	}
	return out
}

func (h *hub) sendLobbyLocked(r *room) {
	msg := encode(protocol.Lobby{Type: protocol.TypeLobby, Waiting: waitingList(r)})
	for _, id := range r.state.Admitters() {
		h.router.Send(id, msg)
	}
}

// announceJoinedLocked tells the other admitted members that p is in the call.
func (h *hub) announceJoinedLocked(p *participant) {
	r := p.room
	me, _ := r.state.Member(p.id)
	for _, m := range r.state.Admitted() {
		if m.ID == p.id || !consult.Connects(p.role, m.Role) {
			continue
		}
		h.router.Send(m.ID, encode(protocol.PeerJoined{Type: protocol.TypePeerJoined, Peer: peerOf(me, r.state.Polite(m.ID, p.id))}))
	}
}

func roomError(err error) *protocol.Error {
	switch {
	case errors.Is(err, consult.ErrForbidden):
		return &protocol.Error{Code: errcode.Forbidden, Message: "Your role in this consultation does not allow that."}
	case errors.Is(err, consult.ErrNotAdmitted):
		return &protocol.Error{Code: errcode.NotAdmitted, Message: "You are still in the waiting room."}
	case errors.Is(err, consult.ErrRoomFull):
		return &protocol.Error{Code: errcode.RoomFull, Message: "A patient is already in this consultation."}
	case errors.Is(err, consult.ErrCallFull):
		return &protocol.Error{Code: errcode.RoomFull, Message: "The visit is full: no more people can be admitted."}
	default:
		return &protocol.Error{Code: errcode.UnknownPeer, Message: "That participant is not in this consultation."}
	}
}

// admit lets a waiting patient into the call.
func (h *hub) admit(ctx context.Context, p *participant, who string) *protocol.Error {
	h.mu.Lock()
	r := p.room
	target, err := r.state.Admit(p.id, who)
	if err != nil {
		h.mu.Unlock()
		return roomError(err)
	}
	tp := r.members[who]
	// The others first: they answer the newcomer's offer, so they should hear of it first.
	h.announceJoinedLocked(tp)
	h.router.Send(who, encode(protocol.Admitted{Type: protocol.TypeAdmitted, Peers: h.peersLocked(tp)}))
	h.sendLobbyLocked(r)
	h.mu.Unlock()

	p.log.Info("admitted", "who", target.ID, "as", target.Role)
	h.opts.Audit(ctx, consult.AuditEvent{Actor: p.id, Action: consult.AuditAdmitted, ConsultationID: r.id, Detail: target.ID})
	return nil
}

// decline turns a waiting patient away.
func (h *hub) decline(ctx context.Context, p *participant, who string) *protocol.Error {
	h.mu.Lock()
	r := p.room
	target, err := r.state.Decline(p.id, who)
	if err != nil {
		h.mu.Unlock()
		return roomError(err)
	}
	tp := r.members[who]
	h.router.Send(who, encode(protocol.Envelope{Type: protocol.TypeDeclined}))
	h.removeLocked(tp)
	h.sendLobbyLocked(r)
	conn := tp.conn
	h.mu.Unlock()

	if conn != nil {
		conn.close(closeNormal, "declined")
	}
	p.log.Info("declined", "who", target.ID)
	h.opts.Audit(ctx, consult.AuditEvent{Actor: p.id, Action: consult.AuditDeclined, ConsultationID: r.id, Detail: target.ID})
	return nil
}

// relay forwards an offer, answer or candidate between two admitted members.
func (h *hub) relay(p *participant, m protocol.Message) *protocol.Error {
	to := m.To
	m.To, m.From, m.ID = "", p.id, nil
	msg := encode(m)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := p.room.state.CanSignal(p.id, to); err != nil {
		return roomError(err)
	}
	h.router.Send(to, msg)
	return nil
}

// leave takes p out of its consultation for good.
func (h *hub) leave(ctx context.Context, p *participant, reason string) {
	h.leaveIf(ctx, p, reason, nil)
}

// leaveIf is leave if cond, checked under the lock, still holds: a resume may have come in between
// deciding to leave and leaving.
func (h *hub) leaveIf(ctx context.Context, p *participant, reason string, cond func() bool) {
	h.mu.Lock()
	if p.room.members[p.id] != p || (cond != nil && !cond()) {
		h.mu.Unlock()
		return // already gone, or back
	}
	r := p.room
	m, _ := r.state.Member(p.id)
	h.removeLocked(p)
	if m.Admitted() {
		left := encode(protocol.PeerLeft{Type: protocol.TypePeerLeft, Peer: p.id, Reason: reason})
		for _, o := range r.state.Admitted() {
			h.router.Send(o.ID, left)
		}
	} else {
		h.sendLobbyLocked(r)
	}
	h.mu.Unlock()

	p.log.Info("left", "reason", reason)
	h.opts.Audit(ctx, consult.AuditEvent{Actor: p.id, Action: consult.AuditLeft, ConsultationID: r.id, Detail: reason})
}

func (h *hub) removeLocked(p *participant) {
	r := p.room
	r.state.Remove(p.id)
	delete(r.members, p.id)
	delete(h.byResume, p.resume)
	if p.grace != nil {
		p.grace.Stop()
		p.grace = nil
	}
	h.router.Forget(p.id)
	if r.state.Len() == 0 && h.rooms[r.id] == r {
		delete(h.rooms, r.id)
	}
}

// disconnected is called when c, p's connection, is gone without a leave. p keeps its place for the
// grace period, so that a client whose network blipped can resume.
func (h *hub) disconnected(p *participant, c *conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p.conn != c || p.room.members[p.id] != p || h.closed {
		return // replaced by a newer connection, already gone, or the server is stopping
	}
	p.conn = nil
	h.router.Detach(p.id, c)
	p.log.Info("connection lost; keeping the place", "grace", h.opts.ResumeGrace)
	p.grace = time.AfterFunc(h.opts.ResumeGrace, func() {
		h.leaveIf(context.Background(), p, protocol.ReasonDisconnected, func() bool { return p.conn == nil })
	})
}

// present reports whether a person is in the call of a consultation.
func (h *hub) present(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.rooms[id]
	return r != nil && r.state.Present()
}

// sendAdmitters sends msg to the providers and clinicians in the call of a consultation.
func (h *hub) sendAdmitters(id string, msg []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r := h.rooms[id]; r != nil {
		for _, pid := range r.state.Admitters() {
			h.router.Send(pid, msg)
		}
	}
}

// kick disconnects, from every consultation, the participants whose link was issued to subject (a
// device that has been revoked). They are told why and cannot resume.
func (h *hub) kick(subject string) {
	if subject == "" {
		return
	}
	msg := encode(protocol.ErrorMessage{Type: protocol.TypeError, Code: errcode.BadToken, Message: "This device has been revoked."})
	h.mu.Lock()
	h.kicked[linkKey("", consult.RoleDevice, subject)] = struct{}{}
	var ps []*participant
	var conns []*conn
	for _, r := range h.rooms {
		for _, p := range r.members {
			if p.subject == subject {
				ps = append(ps, p)
				h.router.Send(p.id, msg)
				if p.conn != nil {
					conns = append(conns, p.conn)
				}
			}
		}
	}
	h.mu.Unlock()
	for _, p := range ps {
		h.leaveIf(context.Background(), p, protocol.ReasonLeft, nil)
	}
	for _, c := range conns {
		c.close(closePolicy, string(errcode.BadToken))
	}
}

// end disconnects everyone in a consultation that has been ended.
func (h *hub) end(id string) {
	h.mu.Lock()
	r := h.rooms[id]
	if r == nil {
		h.mu.Unlock()
		return
	}
	msg := encode(protocol.ErrorMessage{Type: protocol.TypeError, Code: errcode.Ended, Message: "This consultation has ended."})
	var conns []*conn
	for _, p := range r.members {
		h.router.Send(p.id, msg)
		if p.conn != nil {
			conns = append(conns, p.conn)
		}
		h.removeLocked(p)
	}
	delete(h.rooms, id)
	h.mu.Unlock()
	for _, c := range conns {
		c.close(closePolicy, string(errcode.Ended))
	}
}

// shutdown closes every connection; clients will reconnect to another node or when this one is back.
func (h *hub) shutdown() {
	h.mu.Lock()
	h.closed = true
	var conns []*conn
	for _, r := range h.rooms {
		for _, p := range r.members {
			if p.grace != nil {
				p.grace.Stop()
			}
			if p.conn != nil {
				conns = append(conns, p.conn)
			}
		}
	}
	h.mu.Unlock()
	for _, c := range conns {
		c.close(closeGoingAway, "server shutting down")
	}
}
