package client

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/telemed/telemed/protocol"
)

// Peer is another participant in the call and the peer connection to them.
type Peer struct {
	// ID is the participant's id in this consultation.
	ID string
	// Role is "provider", "patient", "guest", "clinician" or "device".
	Role string
	// Name is the name the others are shown.
	Name string
	// PC is the peer connection. Use it for stats, or to add tracks and data channels later (which
	// renegotiates).
	PC *webrtc.PeerConnection

	s      *Session
	polite bool
	// configured, when set, is closed once the connection knows its ICE servers; offers wait for it.
	configured chan struct{}

	// Until bound to a peer (a patient's connection prepared in the waiting room), what the connection
	// sends waits in outbox; guarded by outMu, which also orders sends.
	outMu  sync.Mutex
	bound  bool
	outbox []protocol.Message
	ownDCs []*webrtc.DataChannel // opened here, handed to OnDataChannel once bound

	// Perfect negotiation state, guarded by mu.
	mu          sync.Mutex
	makingOffer bool
	ignoreOffer bool
	negotiated  bool // the first offer/answer exchange is done
	pending     []webrtc.ICECandidateInit

	dcs channels    // telemed's own data channels: chat and file transfers
	vit vitalsState // live vitals channels (vitals.go)

	// What the peer signaled, guarded by stateMu, which bind also holds while it sets ID, Role and Name.
	stateMu sync.Mutex
	media   protocol.MediaState

	// The screen this side sends the peer (group.go), guarded by screenMu.
	screenMu     sync.Mutex
	screenTrack  webrtc.TrackLocal
	screenSender *webrtc.RTPSender
}

// Polite reports whether this side is the polite one towards the peer.
func (p *Peer) Polite() bool { return p.polite }

// role returns Role, and "" while the connection is not bound to its peer yet; safe while bind runs.
func (p *Peer) role() string {
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	return p.Role
}

// setUpLocked installs the handlers and adds the tracks and data channels. p.mu is held.
func (p *Peer) setUpLocked() error {
	pc := p.PC
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			return
		}
		ci := c.ToJSON()
		wc := &protocol.Candidate{Candidate: ci.Candidate, SDPMid: ci.SDPMid, SDPMLineIndex: ci.SDPMLineIndex, UsernameFragment: ci.UsernameFragment}
		p.send(protocol.Message{Type: protocol.TypeCandidate, Candidate: wc})
	})
	pc.OnNegotiationNeeded(func() { go p.negotiate(false) })
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		p.s.notify()
		switch st {
		case webrtc.PeerConnectionStateConnected:
			p.openVitals()
			p.s.emit(Event{Type: EventPeerConnected, Peer: p})
		case webrtc.PeerConnectionStateFailed:
			if !p.polite {
				go p.negotiate(true) // ICE restart, made by the impolite side
			}
		}
	})
	if f := p.s.cfg.OnTrack; f != nil {
		pc.OnTrack(func(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) { f(p, t, r) })
	}
	pc.OnDataChannel(func(dc *webrtc.DataChannel) { p.route(dc, true) })
	// A patient's monitoring device takes part for its data channels only: it gets no media.
	if p.Role != roleDevice {
		for _, t := range p.s.cfg.Tracks {
			if _, err := pc.AddTrack(t); err != nil {
				return fmt.Errorf("add track %s: %w", t.ID(), err)
			}
		}
	}
	if !p.polite {
		for _, spec := range p.s.cfg.DataChannels {
			dc, err := pc.CreateDataChannel(spec.Label, spec.Init)
			if err != nil {
				return fmt.Errorf("data channel %s: %w", spec.Label, err)
			}
			p.outMu.Lock()
			p.ownDCs = append(p.ownDCs, dc)
			bound := p.bound
			p.outMu.Unlock()
			if bound {
				p.handOver()
			}
		}
		// The chat channel is part of the first offer, which it also lets connect when there are no tracks.
		chat, err := pc.CreateDataChannel(ChatLabel, nil)
		if err != nil {
			return fmt.Errorf("data channel %s: %w", ChatLabel, err)
		}
		p.attachChat(chat)
	}
	return nil
}

// CreateDataChannel opens a data channel to the peer (renegotiating if the connection is up).
func (p *Peer) CreateDataChannel(label string, init *webrtc.DataChannelInit) (*webrtc.DataChannel, error) {
	return p.PC.CreateDataChannel(label, init)
}

// bind gives a peer connection its peer: from now on its messages go out, starting with those that
// waited. Data channels it opened reach OnDataChannel first, so their handlers are in place before the
// other side can answer.
func (p *Peer) bind(pp protocol.Peer) {
	p.outMu.Lock()
	p.stateMu.Lock()
	p.ID, p.Role, p.Name = pp.ID, pp.Role, pp.Name // polite is set at creation: a prepared connection is impolite
	p.media = pp.Media
	p.stateMu.Unlock()
	p.bound = true
	p.outMu.Unlock()
	p.handOver()
	p.outMu.Lock()
	defer p.outMu.Unlock()
	for _, m := range p.outbox {
		p.sendLocked(m)
	}
	p.outbox = nil
}

// handOver passes the data channels this side opened to OnDataChannel.
func (p *Peer) handOver() {
	p.outMu.Lock()
	dcs := p.ownDCs
	p.ownDCs = nil
	p.outMu.Unlock()
	if f := p.s.cfg.OnDataChannel; f != nil {
		for _, dc := range dcs {
			f(p, dc)
		}
	}
}

func (p *Peer) send(m protocol.Message) {
	p.outMu.Lock()
	defer p.outMu.Unlock()
	if !p.bound {
		p.outbox = append(p.outbox, m)
		return
	}
	p.sendLocked(m)
}

func (p *Peer) sendLocked(m protocol.Message) {
	m.To = p.ID
	ctx, cancel := context.WithTimeout(p.s.ctx, 10*time.Second)
	defer cancel()
	if err := p.s.send(ctx, m); err != nil {
		p.s.log.Debug("telemed client: send failed", "type", m.Type, "err", err)
	}
}

// negotiate makes an offer, following perfect negotiation: the polite side waits for the first offer.
func (p *Peer) negotiate(iceRestart bool) {
	if p.configured != nil {
		select {
		case <-p.configured:
		case <-p.s.ctx.Done():
			return
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.polite && !p.negotiated {
		return
	}
	if p.PC.SignalingState() != webrtc.SignalingStateStable {
		return // negotiationneeded fires again once stable
	}
	p.makingOffer = true
	defer func() { p.makingOffer = false }()
	offer, err := p.PC.CreateOffer(&webrtc.OfferOptions{ICERestart: iceRestart})
	if err != nil {
		p.s.log.Warn("telemed client: create offer", "err", err)
		return
	}
	if err := p.PC.SetLocalDescription(offer); err != nil {
		p.s.log.Warn("telemed client: set local offer", "err", err)
		return
	}
	p.send(protocol.Message{Type: protocol.TypeOffer, SDP: p.PC.LocalDescription().SDP})
}

func (p *Peer) onSignal(m protocol.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch m.Type {
	case protocol.TypeCandidate:
		c := m.Candidate
		init := webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex, UsernameFragment: c.UsernameFragment}
		if init.Candidate == "" {
			return nil // end of candidates
		}
		if p.PC.RemoteDescription() == nil {
			p.pending = append(p.pending, init)
			return nil
		}
		if err := p.PC.AddICECandidate(init); err != nil && !p.ignoreOffer {
			return fmt.Errorf("add candidate: %w", err)
		}
		return nil
	case protocol.TypeOffer, protocol.TypeAnswer:
		typ := webrtc.SDPTypeOffer
		if m.Type == protocol.TypeAnswer {
			typ = webrtc.SDPTypeAnswer
		}
		collision := typ == webrtc.SDPTypeOffer && (p.makingOffer || p.PC.SignalingState() != webrtc.SignalingStateStable)
		p.ignoreOffer = !p.polite && collision
		if p.ignoreOffer {
			return nil
		}
		if collision {
			if err := p.PC.SetLocalDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeRollback}); err != nil {
				return fmt.Errorf("rollback: %w", err)
			}
		}
		if err := p.PC.SetRemoteDescription(webrtc.SessionDescription{Type: typ, SDP: m.SDP}); err != nil {
			return fmt.Errorf("set remote %s: %w", m.Type, err)
		}
		for _, c := range p.pending {
			if err := p.PC.AddICECandidate(c); err != nil {
				p.s.log.Debug("telemed client: queued candidate", "err", err)
			}
		}
		p.pending = nil
		if typ == webrtc.SDPTypeOffer {
			answer, err := p.PC.CreateAnswer(nil)
			if err != nil {
				return fmt.Errorf("create answer: %w", err)
			}
			if err := p.PC.SetLocalDescription(answer); err != nil {
				return fmt.Errorf("set local answer: %w", err)
			}
			p.send(protocol.Message{Type: protocol.TypeAnswer, SDP: p.PC.LocalDescription().SDP})
		}
		p.negotiated = true
	}
	return nil
}
