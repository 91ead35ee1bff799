// Package client is telemed's Go client: it joins a consultation with a link, as a browser would, and
// connects peer to peer with pion/webrtc. Programs use it to take part in consultations (the device
// agent, tests, bots), sending and receiving tracks and data channels.
//
//	s, err := client.Join(ctx, client.Config{Link: joinURL, Name: "Ada"})
//	if err != nil { ... }
//	defer s.Close()
//	if err := s.WaitAdmitted(ctx); err != nil { ... }
//	peer, err := s.WaitPeer(ctx)
//
// A call may hold several people (a group visit, docs/signaling.md): the session keeps one Peer, with
// its own peer connection, for each of them and for each of the patient's monitoring devices. Tracks
// of Config.Tracks and a screen (Session.PublishScreen) go to every person; Session.SendChat writes
// to everyone, Peer.SendChat and Peer.SendFile to one. Session.SetMedia tells the others whether the
// microphone and camera are on (Peer.Media is what a peer said); providers and clinicians may
// Remove people and AllowShare a screen. A session whose person was removed ends with ErrRemoved.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/protocol"
	"github.com/telemed/telemed/vitals"
)

// Config configures a Session. Only Link is required.
type Config struct {
	// Link is the consultation's start_url (provider), its join_url (patient), an invitation's
	// join_url (guest or clinician) or a device's link.
	Link string
	// Name is shown to the others. Required for patients; providers' names come from their account,
	// invited people's from their invitation.
	Name string
	// API builds peer connections. Default: NewAPI(), pion's defaults with TuneSettingEngine's
	// settings. An API of your own should have them too (TuneSettingEngine), for fast file transfers.
	API *webrtc.API
	// Tracks are sent to every person in the call (not to a patient's monitoring devices). A screen is
	// published apart, while sharing (Session.PublishScreen).
	Tracks []webrtc.TrackLocal
	// DataChannels are opened towards each peer by the side that makes the first offer, so they are
	// part of the first negotiation. The other side receives them in OnDataChannel. That side also
	// opens telemed's chat channel (docs/datachannels.md), so an offer always has something to connect.
	DataChannels []DataChannelSpec
	// OnTrack is called for each remote track.
	OnTrack func(p *Peer, t *webrtc.TrackRemote, r *webrtc.RTPReceiver)
	// OnDataChannel is called for every data channel towards a peer, whichever side opened it, except
	// telemed's own chat, file and vitals channels (ChatLabel, FileLabel, VitalsLabel, WaveformLabel).
	OnDataChannel func(p *Peer, dc *webrtc.DataChannel)
	// OnChat is called for each chat message a peer sends. A delivery receipt goes back after it
	// returns. Without OnChat, messages are dropped and no receipt says they were delivered.
	OnChat func(p *Peer, m ChatMessage)
	// OnChatDelivered is called when a peer confirms it received the chat message with this id.
	OnChatDelivered func(p *Peer, id string)
	// OnFile is called when a peer starts sending a file; it returns where the data goes, or nil to
	// refuse the file. The data is not checked until the end: keep it aside (a temporary file) until
	// t.Wait returns nil. Without OnFile every file is refused.
	OnFile func(p *Peer, t *Transfer) io.Writer
	// OnDataError is called when a peer sends a chat, file or vitals frame that cannot be read (or a
	// vitals reading that is not valid), or reports that it could not read ours. The call goes on.
	OnDataError func(p *Peer, err error)
	// SendVitals makes the session open the live vitals channels (VitalsLabel, WaveformLabel) towards
	// each peer once connected, for SendReading. Default: off; the device agent turns it on.
	SendVitals bool
	// OnReading is called for each valid reading a peer streams on its vitals channels, in the
	// canonical form vitals.Validate returns. Malformed, invalid and late frames are dropped and
	// counted (Peer.VitalsStats).
	OnReading func(p *Peer, r vitals.Reading)
	// Header is sent with the WebSocket handshake (for example an Origin). Default: none.
	Header http.Header
	// HTTPClient dials the WebSocket. Default: http.DefaultClient.
	HTTPClient *http.Client
	// Logger receives connection events. Default: none (a library stays quiet unless asked).
	Logger *slog.Logger
	// NoReconnect disables resuming after a dropped signaling connection.
	NoReconnect bool
}

// DataChannelSpec names a data channel and how it behaves.
type DataChannelSpec struct {
	Label string
	Init  *webrtc.DataChannelInit
}

// Error is an error the server reported, with its protocol code (docs/signaling.md).
type Error struct {
	Code    errcode.Code
	Message string
}

func (e *Error) Error() string { return "telemed: " + string(e.Code) + ": " + e.Message }

// ErrDeclined is returned while waiting to be admitted when the provider declines.
var ErrDeclined = errors.New("telemed: the provider declined")

// ErrClosed is returned by calls on a closed session.
var ErrClosed = errors.New("telemed: session closed")

// ErrRemoved ends a session whose person a provider or clinician removed from the consultation (or
// whose invitation was revoked): the session does not resume, and the link no longer joins.
var ErrRemoved = errors.New("telemed: removed from the consultation")

// EventType says what an Event is about.
type EventType int

// Events a session reports.
const (
	EventLobby         EventType = iota + 1 // the waiting room changed (providers and clinicians)
	EventAdmitted                           // this participant was admitted
	EventDeclined                           // this participant was declined
	EventPeerJoined                         // a peer was admitted into the call
	EventPeerConnected                      // the peer connection to a peer is connected
	EventPeerLeft                           // a peer left the call
	EventError                              // the server reported an error
	EventReconnecting                       // the signaling connection dropped; resuming
	EventReconnected                        // the signaling connection is back
	EventRejoined                           // the place was gone (a server restart): joined afresh, with a new id
	EventClosed                             // the session is over
	EventMedia                              // a peer's media state changed (Event.Media, Peer.Media)
	EventRemoved                            // this person was removed; the session ends with ErrRemoved
	EventShareAllowed                       // this person may now share a screen, or no longer may (Event.Allowed)
)

// Event is something that happened in the session.
type Event struct {
	// Type says what happened, and so which of the other fields are set.
	Type EventType
	// Peer is the peer it happened to (EventPeerJoined, EventPeerConnected, EventPeerLeft, EventMedia).
	Peer *Peer
	// Waiting is the waiting room, for EventLobby.
	Waiting []protocol.Waiting
	// Reason is why the peer left, for EventPeerLeft (protocol.ReasonLeft, ReasonRemoved, ...).
	Reason string
	// Err is the server's error for EventError, and why the session ended for EventClosed.
	Err error
	// Media is the peer's new media state, for EventMedia.
	Media protocol.MediaState
	// Allowed says whether this person may share a screen, for EventShareAllowed.
	Allowed bool
}

// Session is one participant's presence in a consultation.
type Session struct {
	cfg    Config
	log    *slog.Logger
	wsURL  string
	join   protocol.Message
	events chan Event

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	ws       *websocket.Conn
	welcome  protocol.Welcome
	state    string
	waiting  []protocol.Waiting
	peers    map[string]*Peer
	admitted chan struct{} // closed once admitted
	changed  chan struct{} // closed and replaced whenever state a Wait* call watches changes
	warm     *Peer         // a peer connection made ready before the peer it is for is known
	warmDone chan struct{} // closed once warm is ready (or failed); nil when none is being made
	welcomed chan struct{} // closed at the first welcome
	welcome1 sync.Once
	lastSeq  uint64 // the highest seq received; a resume asks for what came after
	outbox   []any  // what was sent while reconnecting, sent once resumed
	declined bool
	closed   bool
	lastErr  error

	// Group visits (group.go).
	mediaMu  sync.Mutex          // orders media messages; taken before mu
	media    protocol.MediaState // this person's, as last set (SetMedia)
	mediaSet bool                // SetMedia was called: send media again on admission
	canShare bool                // may share a screen (welcome, share_allowed)
	screen   webrtc.TrackLocal   // the published screen, or nil
}

// ParseLink splits a start_url or join_url into the WebSocket URL, consultation id and token.
func ParseLink(link string) (wsURL, consultationID, token string, err error) {
	u, err := url.Parse(link)
	if err != nil {
		return "", "", "", fmt.Errorf("parse link: %w", err)
	}
	id, ok := strings.CutPrefix(u.Path, "/c/")
	frag, _ := url.ParseQuery(u.Fragment)
	token = frag.Get("t")
	if !ok || id == "" || strings.Contains(id, "/") || token == "" {
		return "", "", "", fmt.Errorf("parse link %q: want <base-url>/c/<id>#t=<token>", link)
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", "", "", fmt.Errorf("parse link: scheme %q is not http or https", u.Scheme)
	}
	u.Path, u.Fragment, u.RawQuery = "/ws", "", ""
	return u.String(), id, token, nil
}

// Join connects to the consultation of cfg.Link and returns once the server has welcomed this
// participant (into the call, or the waiting room). A server refusal is an *Error.
func Join(ctx context.Context, cfg Config) (*Session, error) {
	wsURL, id, token, err := ParseLink(cfg.Link)
	if err != nil {
		return nil, err
	}
	if cfg.API == nil {
		cfg.API = NewAPI()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Session{
		cfg: cfg, log: cfg.Logger, wsURL: wsURL,
		join:   protocol.Message{Type: protocol.TypeJoin, Version: protocol.ProtocolVersion, Consultation: id, Token: token, Name: cfg.Name},
		events: make(chan Event, 256),
		ctx:    sctx, cancel: cancel, done: make(chan struct{}),
		peers:    make(map[string]*Peer),
		admitted: make(chan struct{}),
		changed:  make(chan struct{}),
		welcomed: make(chan struct{}),
		media:    protocol.MediaState{Audio: true, Video: true},
	}
	// Build the peer connection while the signaling connection is being made and while nobody waits
	// for it: a patient, guest or clinician prepares the one (and its offer) it will use towards the
	// first person already in the call; a provider prepares one for the next newcomer. A newcomer is
	// the impolite side (docs/signaling.md), so the provider's is polite and everyone else's impolite;
	// connections to the other peers are made when they are known.
	s.prewarm(roleOfToken(token) == "provider")
	ws, w, err := s.connect(ctx, "")
	if err != nil {
		cancel()
		return nil, err
	}
	s.ws = ws
	s.applyWelcome(w)
	go s.readLoop(ws)
	return s, nil
}

// roleOfToken reads the role from a link token: <consultation>.<role>.<expiry>.<signature>, or
// <consultation>.<role>.<expiry>.<subject>.<signature> for a link issued to one holder (an
// invitation, a device). The role is the second part of both (docs/signaling.md); anything else gives
// "". Only the server's word counts; this is a guess to prepare ahead.
func roleOfToken(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 4 && len(parts) != 5 {
		return ""
	}
	if !consult.Role(parts[1]).Valid() {
		return ""
	}
	return parts[1]
}

// prewarm starts preparing a peer connection in the background. It is bound to its peer when one
// arrives; what it sends meanwhile (the offer, candidates) waits for that.
func (s *Session) prewarm(polite bool) {
	done := make(chan struct{})
	s.mu.Lock()
	s.warmDone = done
	s.mu.Unlock()
	go func() {
		defer close(done)
		pc, err := s.newPeerConnection()
		if err != nil {
			s.log.Warn("telemed client: cannot prepare a peer connection; will make one when needed", "err", err)
			return
		}
		// Its first offer waits until the welcome has said which ICE servers to gather from.
		p := &Peer{PC: pc, s: s, polite: polite, configured: make(chan struct{})}
		p.mu.Lock()
		err = p.setUpLocked()
		p.mu.Unlock()
		if err == nil {
			select {
			case <-s.welcomed:
				err = pc.SetConfiguration(iceConfiguration(s.Welcome()))
			case <-s.ctx.Done():
				err = ErrClosed
			}
		}
		close(p.configured)
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil || s.closed {
			pc.Close()
			return
		}
		s.warm = p
	}()
}

// connect dials and joins (or resumes), returning the welcome.
func (s *Session) connect(ctx context.Context, resume string) (*websocket.Conn, protocol.Welcome, error) {
	ws, _, err := websocket.Dial(ctx, s.wsURL, &websocket.DialOptions{HTTPHeader: s.cfg.Header, HTTPClient: s.cfg.HTTPClient})
	if err != nil {
		return nil, protocol.Welcome{}, fmt.Errorf("connect to %s: %w", s.wsURL, err)
	}
	ws.SetReadLimit(protocol.MaxFrameSize)
	j := s.join
	j.Resume = resume
	if resume != "" {
		s.mu.Lock()
		j.LastSeq = s.lastSeq
		s.mu.Unlock()
	}
	if err := writeJSON(ctx, ws, j); err != nil {
		ws.CloseNow()
		return nil, protocol.Welcome{}, fmt.Errorf("join: %w", err)
	}
	for {
		var env protocol.Envelope
		data, err := readMessage(ctx, ws, &env)
		if err != nil {
			ws.CloseNow()
			return nil, protocol.Welcome{}, fmt.Errorf("join: %w", err)
		}
		switch env.Type {
		case protocol.TypeWelcome:
			var w protocol.Welcome
			if err := json.Unmarshal(data, &w); err != nil {
				ws.CloseNow()
				return nil, w, fmt.Errorf("join: bad welcome: %w", err)
			}
			return ws, w, nil
		case protocol.TypeError:
			var e protocol.ErrorMessage
			json.Unmarshal(data, &e)
			ws.CloseNow()
			return nil, protocol.Welcome{}, &Error{Code: e.Code, Message: e.Message}
		}
	}
}

func writeJSON(ctx context.Context, ws *websocket.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return ws.Write(ctx, websocket.MessageText, b)
}

func readMessage(ctx context.Context, ws *websocket.Conn, env *protocol.Envelope) ([]byte, error) {
	_, data, err := ws.Read(ctx)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, env); err != nil {
		return nil, fmt.Errorf("server sent bad JSON: %w", err)
	}
	return data, nil
}

func (s *Session) applyWelcome(w protocol.Welcome) {
	s.mu.Lock()
	s.welcome = w
	s.waiting = w.Waiting
	s.canShare = w.You.CanShare
	// A fresh join (EventRejoined) may have lost the permission to share.
	unshare := !w.You.CanShare && (s.screen != nil || s.media.Screen)
	if unshare {
		s.screen, s.media.Screen = nil, false
	}
	peers := make([]*Peer, 0, len(s.peers)+1)
	for _, p := range s.peers {
		peers = append(peers, p)
	}
	if s.warm != nil {
		peers = append(peers, s.warm) // the prepared one gathers with them too
	}
	s.mu.Unlock()
	// A resumed session brings fresh TURN credentials; an ICE restart from now on uses them.
	for _, p := range peers {
		if err := p.PC.SetConfiguration(iceConfiguration(w)); err != nil {
			s.log.Debug("telemed client: cannot update ICE servers", "peer", p.ID, "err", err)
		}
	}
	if unshare {
		for _, err := range s.syncScreens() {
			s.log.Warn("telemed client: cannot stop sharing", "err", err)
		}
	}
	s.welcome1.Do(func() { close(s.welcomed) })
	if w.State == protocol.StateAdmitted {
		s.setAdmitted(w.Peers)
	}
}

func (s *Session) emit(e Event) {
	select {
	case s.events <- e:
	default:
		s.log.Warn("telemed client: event dropped; read Events() to keep up", "type", e.Type)
	}
}

// Events delivers what happens in the session. It is buffered; a program that does not read it loses
// events, never blocks the session.
func (s *Session) Events() <-chan Event { return s.events }

// ID is this participant's id.
func (s *Session) ID() string { s.mu.Lock(); defer s.mu.Unlock(); return s.welcome.You.ID }

// Role is this participant's role: "provider", "patient", "guest", "clinician" or "device".
func (s *Session) Role() string { s.mu.Lock(); defer s.mu.Unlock(); return s.welcome.You.Role }

// Welcome returns the server's last welcome.
func (s *Session) Welcome() protocol.Welcome { s.mu.Lock(); defer s.mu.Unlock(); return s.welcome }

// Waiting returns the waiting room as last reported (providers and clinicians only).
func (s *Session) Waiting() []protocol.Waiting {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]protocol.Waiting(nil), s.waiting...)
}

// Peer returns the peer in the call with this id, or nil.
func (s *Session) Peer(id string) *Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peers[id]
}

// Peers returns the peers in the call: people and devices.
func (s *Session) Peers() []*Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Peer, 0, len(s.peers))
	for _, p := range s.peers {
		out = append(out, p)
	}
	return out
}

// WaitAdmitted blocks until this participant is in the call.
func (s *Session) WaitAdmitted(ctx context.Context) error {
	s.mu.Lock()
	admitted := s.admitted
	s.mu.Unlock()
	select {
	case <-admitted:
		return nil
	case <-s.done:
		return s.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Done is closed when the session has ended: closed, or ended by the server (Err says why).
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns nil while the session goes on, and once it has ended (Done) why: ErrDeclined,
// ErrRemoved, the server's *Error (the consultation ended, the link expired), or ErrClosed.
func (s *Session) Err() error {
	select {
	case <-s.done:
	default:
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.declined:
		return ErrDeclined
	case s.lastErr != nil:
		return s.lastErr
	}
	return ErrClosed
}

// WaitPeer blocks until the peer connection to some person (not a device) is connected, and returns
// that peer.
func (s *Session) WaitPeer(ctx context.Context) (*Peer, error) {
	var found *Peer
	err := s.waitFor(ctx, func() bool {
		for _, p := range s.Peers() {
			if p.role() != roleDevice && p.PC.ConnectionState() == webrtc.PeerConnectionStateConnected {
				found = p
				return true
			}
		}
		return false
	})
	return found, err
}

// WaitPeers blocks until the peer connections to at least n people (devices are not counted) are
// connected, and returns those peers.
func (s *Session) WaitPeers(ctx context.Context, n int) ([]*Peer, error) {
	var found []*Peer
	err := s.waitFor(ctx, func() bool {
		found = found[:0]
		for _, p := range s.Peers() {
			if p.role() != roleDevice && p.PC.ConnectionState() == webrtc.PeerConnectionStateConnected {
				found = append(found, p)
			}
		}
		return len(found) >= n
	})
	return found, err
}

// WaitWaiting blocks until someone is in the waiting room (providers and clinicians) and returns the
// room.
func (s *Session) WaitWaiting(ctx context.Context) ([]protocol.Waiting, error) {
	var w []protocol.Waiting
	err := s.waitFor(ctx, func() bool { w = s.Waiting(); return len(w) > 0 })
	return w, err
}

// waitFor waits until cond holds, the session ends (returning Err), or ctx ends, checking cond
// whenever the session's state changes.
func (s *Session) waitFor(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		changed := s.changed
		s.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return s.Err()
		case <-changed:
		}
	}
}

// notify wakes the Wait* calls to look again.
func (s *Session) notify() {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// maxOutbox bounds what is kept to send while reconnecting: a renegotiation and its candidates.
const maxOutbox = 256

func (s *Session) send(ctx context.Context, m any) error {
	s.mu.Lock()
	ws, closed := s.ws, s.closed
	if ws == nil && !closed {
		// Reconnecting: keep it for the resumed connection, so a negotiation is not cut in half.
		defer s.mu.Unlock()
		if len(s.outbox) >= maxOutbox {
			return errors.New("telemed: reconnecting, and too much is waiting to be sent")
		}
		s.outbox = append(s.outbox, m)
		return nil
	}
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return writeJSON(ctx, ws, m)
}

// Admit lets a waiting person into the call (providers and clinicians only).
func (s *Session) Admit(ctx context.Context, peerID string) error {
	return s.send(ctx, protocol.Message{Type: protocol.TypeAdmit, Peer: peerID})
}

// Decline turns a waiting person away (providers and clinicians only).
func (s *Session) Decline(ctx context.Context, peerID string) error {
	return s.send(ctx, protocol.Message{Type: protocol.TypeDecline, Peer: peerID})
}

// Leave hangs up: the others are told at once, and the session closes.
func (s *Session) Leave(ctx context.Context) error {
	err := s.send(ctx, protocol.Message{Type: protocol.TypeLeave})
	return errors.Join(err, s.Close())
}

// Close ends the session: it closes the signaling connection in order, which the server takes as
// leaving, and every peer connection. Do not call it from a callback of the session (OnDataChannel,
// OnTrack): it waits for the session's goroutines, one of which runs those callbacks.
func (s *Session) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	ws := s.ws
	peers := s.peers
	s.peers = map[string]*Peer{}
	if s.warm != nil {
		peers["(prepared)"] = s.warm
		s.warm = nil
	}
	preparing := s.warmDone
	s.mu.Unlock()
	s.cancel()
	if preparing != nil {
		<-preparing // it sees the session closed and closes what it built
	}
	if ws != nil {
		ws.Close(websocket.StatusNormalClosure, "")
	}
	var errs []error
	for _, p := range peers {
		errs = append(errs, p.close())
	}
	<-s.done
	return errors.Join(errs...)
}

// readLoop handles server messages until the session closes, reconnecting when the socket drops.
func (s *Session) readLoop(ws *websocket.Conn) {
	defer close(s.done)
	defer func() {
		s.mu.Lock()
		err := s.lastErr
		s.mu.Unlock()
		s.emit(Event{Type: EventClosed, Err: err})
	}()
	for {
		err := s.readConn(ws)
		s.mu.Lock()
		stop := s.closed || s.declined || s.cfg.NoReconnect || s.lastErr != nil
		s.ws = nil
		s.mu.Unlock()
		if stop || s.ctx.Err() != nil {
			return
		}
		s.log.Info("telemed client: signaling connection lost; resuming", "err", err)
		s.emit(Event{Type: EventReconnecting, Err: err})
		ws = s.reconnect()
		if ws == nil {
			return
		}
		s.emit(Event{Type: EventReconnected})
	}
}

func (s *Session) reconnect() *websocket.Conn {
	backoff := 250 * time.Millisecond
	for {
		select {
		case <-s.ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
		ws, w, err := s.connect(ctx, s.Welcome().Resume)
		fresh := false
		var se *Error
		if errors.As(err, &se) && se.Code == errcode.BadResume {
			// Our place is gone (the server restarted, or we were away too long): join afresh,
			// as the protocol says, rather than end the session.
			ws, w, err = s.connect(ctx, "")
			fresh = err == nil
		}
		cancel()
		if errors.As(err, &se) && se.Code == errcode.Unavailable {
			// The server is stopping, or cannot reach what nodes share: another try (through the
			// load balancer, to another node perhaps) may well work.
			s.log.Info("telemed client: the server is unavailable; trying again", "err", err)
		} else if errors.As(err, &se) {
			// The server refuses us (the link expired, the consultation ended): nothing to rejoin.
			s.mu.Lock()
			s.lastErr = se
			s.mu.Unlock()
			return nil
		}
		if err == nil && fresh {
			s.restart()
		}
		if err == nil {
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				ws.CloseNow()
				return nil
			}
			s.ws = ws
			out := s.outbox
			s.outbox = nil
			s.mu.Unlock()
			s.applyWelcome(w)
			for _, m := range out {
				if err := writeJSON(s.ctx, ws, m); err != nil {
					break // the new connection failed too; the read loop will notice
				}
			}
			return ws
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// restart forgets the participant this session was, before the welcome of a fresh join is applied:
// its peer connections, its sequence, what waited to be sent, and its admission.
func (s *Session) restart() {
	s.mu.Lock()
	old := s.peers
	s.peers = make(map[string]*Peer)
	s.lastSeq = 0
	s.outbox = nil
	if s.state == protocol.StateAdmitted {
		s.state = ""
		s.admitted = make(chan struct{})
	}
	s.mu.Unlock()
	for _, p := range old {
		p.close()
		s.emit(Event{Type: EventPeerLeft, Peer: p, Reason: "rejoined"})
	}
	s.emit(Event{Type: EventRejoined})
}

// Client keep-alive: the server's WebSocket pings prove nothing to us when the path has died
// silently, so the client pings too and gives the connection up after a silence.
const (
	pingEvery    = 20 * time.Second
	silenceLimit = 50 * time.Second
)

func (s *Session) readConn(ws *websocket.Conn) error {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	var lastRead atomic.Int64
	lastRead.Store(time.Now().UnixNano())
	go func() {
		tick := time.NewTicker(pingEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if time.Since(time.Unix(0, lastRead.Load())) > silenceLimit {
					ws.CloseNow() // the read below fails, and the session resumes
					return
				}
				wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
				writeJSON(wctx, ws, protocol.Message{Type: protocol.TypePing})
				wcancel()
			}
		}
	}()
	for {
		var env protocol.Envelope
		data, err := readMessage(ctx, ws, &env)
		if err != nil {
			return err
		}
		lastRead.Store(time.Now().UnixNano())
		if env.Seq != 0 {
			s.mu.Lock()
			seen := env.Seq <= s.lastSeq
			if !seen {
				s.lastSeq = env.Seq
			}
			s.mu.Unlock()
			if seen {
				continue
			}
		}
		s.handle(env.Type, data)
	}
}

func (s *Session) handle(typ string, data []byte) {
	if s.handleGroup(typ, data) {
		return
	}
	switch typ {
	case protocol.TypeLobby:
		var m protocol.Lobby
		if json.Unmarshal(data, &m) == nil {
			s.mu.Lock()
			s.waiting = m.Waiting
			s.mu.Unlock()
			s.notify()
			s.emit(Event{Type: EventLobby, Waiting: m.Waiting})
		}
	case protocol.TypeAdmitted:
		var m protocol.Admitted
		if json.Unmarshal(data, &m) == nil {
			s.setAdmitted(m.Peers)
		}
	case protocol.TypeDeclined:
		s.mu.Lock()
		s.declined = true
		s.mu.Unlock()
		s.emit(Event{Type: EventDeclined})
	case protocol.TypePeerJoined:
		var m protocol.PeerJoined
		if json.Unmarshal(data, &m) == nil {
			if p := s.addPeer(m.Peer); p != nil {
				s.emit(Event{Type: EventPeerJoined, Peer: p})
			}
		}
	case protocol.TypePeerLeft:
		var m protocol.PeerLeft
		if json.Unmarshal(data, &m) == nil {
			s.mu.Lock()
			p := s.peers[m.Peer]
			delete(s.peers, m.Peer)
			s.mu.Unlock()
			if p != nil {
				p.close()
				s.notify()
				s.emit(Event{Type: EventPeerLeft, Peer: p, Reason: m.Reason})
			}
		}
	case protocol.TypeOffer, protocol.TypeAnswer, protocol.TypeCandidate:
		var m protocol.Message
		if json.Unmarshal(data, &m) != nil {
			return
		}
		s.mu.Lock()
		p := s.peers[m.From]
		s.mu.Unlock()
		if p == nil {
			s.log.Warn("telemed client: signal from unknown peer", "from", m.From, "type", typ)
			return
		}
		if err := p.onSignal(m); err != nil {
			s.log.Warn("telemed client: signal failed", "peer", p.ID, "type", typ, "err", err)
		}
	case protocol.TypeError:
		var m protocol.ErrorMessage
		json.Unmarshal(data, &m)
		err := &Error{Code: m.Code, Message: m.Message}
		if m.Code == errcode.Ended {
			s.mu.Lock()
			s.lastErr = err
			s.mu.Unlock()
		}
		s.emit(Event{Type: EventError, Err: err})
	}
}

func (s *Session) setAdmitted(peers []protocol.Peer) {
	s.mu.Lock()
	first := s.state != protocol.StateAdmitted
	s.state = protocol.StateAdmitted
	if first {
		close(s.admitted)
	}
	resend := first && s.mediaSet
	s.mu.Unlock()
	if resend {
		// Set while waiting, or before a fresh join: the server takes it only now.
		go s.resendMedia()
	}
	if first {
		s.emit(Event{Type: EventAdmitted})
	}
	for _, pp := range peers {
		s.addPeer(pp)
	}
}

// addPeer creates the peer connection towards a peer, unless it exists (after a resume it does).
func (s *Session) addPeer(pp protocol.Peer) *Peer {
	s.mu.Lock()
	old := s.peers[pp.ID]
	exists := s.closed || old != nil
	s.mu.Unlock()
	if old != nil {
		s.updateMedia(old, pp.Media) // a resumed welcome says what may have changed meanwhile
	}
	if exists {
		return nil
	}
	if p := s.takeWarm(pp); p != nil {
		return p
	}
	pc, err := s.newPeerConnection()
	if err != nil {
		s.log.Error("telemed client: cannot create peer connection", "peer", pp.ID, "err", err)
		return nil
	}
	p := &Peer{ID: pp.ID, Role: pp.Role, Name: pp.Name, PC: pc, polite: pp.Polite, s: s}
	// Hold the peer while it is set up, so a signal for it that arrives meanwhile waits.
	p.mu.Lock()
	defer p.mu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		pc.Close()
		return nil
	}
	s.peers[pp.ID] = p
	s.mu.Unlock()
	p.bind(pp)
	defer s.notify()
	if err := p.setUpLocked(); err != nil {
		s.log.Error("telemed client: cannot set up peer connection", "peer", pp.ID, "err", err)
		s.mu.Lock()
		delete(s.peers, pp.ID)
		s.mu.Unlock()
		pc.Close()
		return nil
	}
	p.syncScreen()
	return p
}

// takeWarm binds the prepared peer connection to pp, if there is one of the right politeness. One
// still being prepared is waited for: it started earlier than a new one would.
func (s *Session) takeWarm(pp protocol.Peer) *Peer {
	s.mu.Lock()
	done := s.warmDone
	s.mu.Unlock()
	if done != nil {
		select {
		case <-done:
		case <-s.ctx.Done():
			return nil
		}
	}
	s.mu.Lock()
	p := s.warm
	// A prepared connection carries the tracks; a device gets none, so it gets a connection of its own.
	if p == nil || s.closed || p.polite != pp.Polite || pp.Role == roleDevice {
		s.mu.Unlock()
		return nil
	}
	s.warm, s.warmDone = nil, nil
	s.peers[pp.ID] = p
	s.mu.Unlock()
	p.bind(pp)
	p.syncScreen() // prepared before the screen may have been published
	s.notify()
	if pp.Polite {
		s.prewarm(true) // ready for whoever comes next
	}
	return p
}

func pionICEServers(servers []protocol.ICEServer) []webrtc.ICEServer {
	var out []webrtc.ICEServer
	for _, is := range servers {
		out = append(out, webrtc.ICEServer{URLs: is.URLs, Username: is.Username, Credential: is.Credential})
	}
	return out
}

// iceConfiguration is the part of a peer connection's configuration that the server decides.
func iceConfiguration(w protocol.Welcome) webrtc.Configuration {
	policy := webrtc.ICETransportPolicyAll
	if w.ICEPolicy == "relay" {
		policy = webrtc.ICETransportPolicyRelay
	}
	return webrtc.Configuration{ICEServers: pionICEServers(w.ICEServers), ICETransportPolicy: policy}
}

func (s *Session) newPeerConnection() (*webrtc.PeerConnection, error) {
	pc, err := s.cfg.API.NewPeerConnection(iceConfiguration(s.Welcome()))
	if err != nil {
		return nil, fmt.Errorf("new peer connection: %w", err)
	}
	return pc, nil
}
