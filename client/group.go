package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/telemed/telemed/protocol"
)

// Group visits (docs/signaling.md, "Group visits"): media state, removal and screen sharing.

// ErrShareNotAllowed is returned by PublishScreen, and by SetMedia with screen on, for a patient or
// guest whom no provider or clinician has allowed to share (CanShare).
var ErrShareNotAllowed = errors.New("telemed: sharing a screen needs a provider's or clinician's permission")

// ErrScreenPublished is returned by PublishScreen while a screen is published already.
var ErrScreenPublished = errors.New("telemed: a screen is published already; UnpublishScreen first")

// Media returns the peer's media state as it last signaled it; EventMedia says when it changes. A
// peer that has said nothing is taken to have its microphone and camera on.
func (p *Peer) Media() protocol.MediaState {
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	return p.media
}

// updateMedia records a peer's media state and, if it changed, tells the program.
func (s *Session) updateMedia(p *Peer, m protocol.MediaState) {
	p.stateMu.Lock()
	changed := p.media != m
	p.media = m
	p.stateMu.Unlock()
	if changed {
		s.notify()
		s.emit(Event{Type: EventMedia, Peer: p, Media: m})
	}
}

// Media returns this person's media state as last set (SetMedia, PublishScreen, UnpublishScreen),
// and before that microphone and camera on.
func (s *Session) Media() protocol.MediaState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.media
}

// CanShare reports whether this person may share a screen: providers and clinicians always, patients
// and guests once a provider or clinician allows it (EventShareAllowed).
func (s *Session) CanShare() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.canShare
}

// SetMedia tells the others in the call whether this person's microphone (audio) and camera (video)
// are on and whether a screen is shared; they see it in Peer.Media. Set before admission, it is kept
// and sent once admitted. It does not touch any track: a program that turns its camera off stops
// writing to the track itself. PublishScreen and UnpublishScreen set screen themselves; screen on
// without CanShare is ErrShareNotAllowed.
func (s *Session) SetMedia(ctx context.Context, audio, video, screen bool) error {
	m := protocol.MediaState{Audio: audio, Video: video, Screen: screen}
	s.mediaMu.Lock()
	defer s.mediaMu.Unlock()
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrClosed
	case screen && !s.canShare:
		s.mu.Unlock()
		return ErrShareNotAllowed
	}
	s.media, s.mediaSet = m, true
	admitted := s.state == protocol.StateAdmitted
	s.mu.Unlock()
	if !admitted {
		return nil
	}
	return s.send(ctx, mediaMessage(m))
}

// resendMedia sends the media state set before admission, now that the server takes it.
func (s *Session) resendMedia() {
	s.mediaMu.Lock()
	defer s.mediaMu.Unlock()
	s.mu.Lock()
	m := s.media
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	if err := s.send(ctx, mediaMessage(m)); err != nil {
		s.log.Debug("telemed client: cannot send the media state", "err", err)
	}
}

func mediaMessage(m protocol.MediaState) protocol.Message {
	return protocol.Message{Type: protocol.TypeMedia, Audio: &m.Audio, Video: &m.Video, Screen: &m.Screen}
}

// Remove takes a person out of the call or the waiting room (providers and clinicians only): they are
// disconnected, the others see them leave (EventPeerLeft, reason protocol.ReasonRemoved), and their
// link no longer joins this consultation. The server answers a refusal with an EventError
// (forbidden, unknown_peer).
func (s *Session) Remove(ctx context.Context, peerID string) error {
	return s.send(ctx, protocol.Message{Type: protocol.TypeRemove, Peer: peerID})
}

// AllowShare lets a patient or guest in the call share a screen, or takes it back (providers and
// clinicians only). Taking it back from someone who is sharing stops their screen for everyone.
func (s *Session) AllowShare(ctx context.Context, peerID string, allowed bool) error {
	return s.send(ctx, protocol.Message{Type: protocol.TypeAllowShare, Peer: peerID, Allowed: &allowed})
}

// PublishScreen sends track, a shared screen, to every person in the call and to those who come
// later (not to devices), renegotiating each peer connection, and tells the others the screen is
// shared. It needs CanShare (ErrShareNotAllowed); one screen at a time (ErrScreenPublished). The
// other side gets it in Config.OnTrack as a track of its own: give it a track id and stream id of its
// own. An error naming a peer means that peer's connection did not take the track; the others have it.
func (s *Session) PublishScreen(ctx context.Context, track webrtc.TrackLocal) error {
	if track == nil {
		return errors.New("telemed: publish screen: no track")
	}
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrClosed
	case !s.canShare:
		s.mu.Unlock()
		return ErrShareNotAllowed
	case s.screen != nil:
		s.mu.Unlock()
		return ErrScreenPublished
	}
	s.screen = track
	m := s.media
	s.mu.Unlock()
	errs := s.syncScreens()
	return errors.Join(append(errs, s.SetMedia(ctx, m.Audio, m.Video, true))...)
}

// UnpublishScreen stops sending the published screen to everyone, renegotiating, and tells the others
// the screen is no longer shared. Without a published screen it does nothing.
func (s *Session) UnpublishScreen(ctx context.Context) error {
	s.mu.Lock()
	if s.screen == nil {
		s.mu.Unlock()
		return nil
	}
	s.screen = nil
	m := s.media
	s.mu.Unlock()
	errs := s.syncScreens()
	return errors.Join(append(errs, s.SetMedia(ctx, m.Audio, m.Video, false))...)
}

// syncScreens brings every peer connection in line with the session's screen.
func (s *Session) syncScreens() []error {
	var errs []error
	for _, p := range s.Peers() {
		if err := p.syncScreen(); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// syncScreen makes what this side sends the peer match the session's screen: it adds the screen's
// track, or removes the one it sent, which renegotiates. A device gets no screen, and a connection not
// bound to its peer yet gets it once bound (takeWarm). A closed connection is no error: its peer left.
func (p *Peer) syncScreen() error {
	p.screenMu.Lock()
	defer p.screenMu.Unlock()
	p.s.mu.Lock()
	want := p.s.screen
	p.s.mu.Unlock()
	if r := p.role(); r == "" || r == roleDevice || p.screenTrack == want {
		return nil
	}
	if p.screenSender != nil {
		if err := p.PC.RemoveTrack(p.screenSender); err != nil && !errors.Is(err, webrtc.ErrConnectionClosed) {
			return fmt.Errorf("stop the screen to %s: %w", p.who(), err)
		}
		p.screenTrack, p.screenSender = nil, nil
	}
	if want == nil {
		return nil
	}
	// A transceiver of its own, never AddTrack: that could reuse the camera's m-line, and receivers
	// take the first video m-line for the camera and every later one for a screen.
	tr, err := p.PC.AddTransceiverFromTrack(want, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if errors.Is(err, webrtc.ErrConnectionClosed) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("send the screen to %s: %w", p.who(), err)
	}
	p.screenTrack, p.screenSender = want, tr.Sender()
	return nil
}

// who names the peer in errors: its name, else its id.
func (p *Peer) who() string {
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	if p.Name != "" {
		return p.Name
	}
	return p.ID
}

// handleGroup handles the messages of group visits, and reports whether typ was one.
func (s *Session) handleGroup(typ string, data []byte) bool {
	switch typ {
	case protocol.TypeMedia:
		var m protocol.Media
		if json.Unmarshal(data, &m) != nil {
			return true
		}
		if p := s.Peer(m.Peer); p != nil {
			s.updateMedia(p, m.MediaState)
		}
	case protocol.TypeRemoved:
		// The server closes the socket next; lastErr keeps the session from resuming.
		s.mu.Lock()
		if s.lastErr == nil {
			s.lastErr = ErrRemoved
		}
		s.mu.Unlock()
		s.emit(Event{Type: EventRemoved, Err: ErrRemoved})
	case protocol.TypeShareAllowed:
		var m protocol.ShareAllowed
		if json.Unmarshal(data, &m) != nil {
			return true
		}
		s.mu.Lock()
		s.canShare = m.Allowed
		stop := !m.Allowed && s.screen != nil
		if !m.Allowed {
			s.screen = nil
			s.media.Screen = false // the server has told the others already
		}
		s.mu.Unlock()
		if stop {
			for _, err := range s.syncScreens() {
				s.log.Warn("telemed client: cannot stop sharing", "err", err)
			}
		}
		s.emit(Event{Type: EventShareAllowed, Allowed: m.Allowed})
	default:
		return false
	}
	return true
}
