package signal

import (
	"context"
	"errors"
	"fmt"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/protocol"
)

// peerOf is a member as the others see it; polite is the receiver's side towards it.
func peerOf(m consult.Member, polite bool) protocol.Peer {
	return protocol.Peer{ID: m.ID, Role: string(m.Role), Name: m.Name, Polite: polite,
		Media:    protocol.MediaState{Audio: m.Media.Audio, Video: m.Media.Video, Screen: m.Media.Screen},
		CanShare: m.CanShare}
}

// linkKey names the link a participant came in with, for the links stopped for good: a device's or
// an invitation's by its subject (unique across consultations), the patient link by its consultation.
// The provider's link is never stopped this way.
func linkKey(consultationID string, role consult.Role, subject string) string {
	switch {
	case subject != "":
		return "subject " + subject
	case role == consult.RolePatient:
		return "patient " + consultationID
	default:
		return ""
	}
}

// kickedError is what a link stopped by a removal or a revocation is told.
func kickedError(role consult.Role) *protocol.Error {
	if role == consult.RoleDevice {
		return joinError(consult.ErrDeviceRevoked)
	}
	return &protocol.Error{Code: errcode.BadToken, Message: "You were removed from this consultation, or your invitation was revoked, so this link no longer works. Contact the clinic if this is a mistake."}
}

// addError is what a join the room refused is told.
func addError(err error, maxPeople int) *protocol.Error {
	switch {
	case errors.Is(err, consult.ErrTooManyDevices):
		return &protocol.Error{Code: errcode.RoomFull, Message: fmt.Sprintf("%d devices are already in this consultation.", consult.MaxDevices)}
	case errors.Is(err, consult.ErrCallFull):
		return &protocol.Error{Code: errcode.RoomFull, Message: fmt.Sprintf("This visit is full: %d people are already in it, the most it can hold. Ask the clinic to let you in when someone leaves.", maxPeople)}
	default:
		return &protocol.Error{Code: errcode.WaitingRoomFull, Message: "The waiting room is full. Please try again in a few minutes."}
	}
}

// remove takes a person out of the consultation at the word of a provider or clinician, and stops
// their link.
func (h *hub) remove(ctx context.Context, p *participant, who string) *protocol.Error {
	h.mu.Lock()
	target, err := p.room.state.RemoveBy(p.id, who)
	if err != nil {
		h.mu.Unlock()
		if errors.Is(err, consult.ErrForbidden) && p.role.Admits() {
			return &protocol.Error{Code: errcode.Forbidden, Message: "The provider and devices cannot be removed from a consultation."}
		}
		return roomError(err)
	}
	tp := p.room.members[who]
	if key := linkKey(p.room.id, tp.role, tp.subject); key != "" {
		h.kicked[key] = struct{}{}
	}
	conn := h.removedLocked(tp, target.Admitted())
	h.mu.Unlock()
	h.afterRemoval(ctx, p.id, tp, conn)
	return nil
}

// removeSubject removes whoever holds the invitation subject in a consultation: it was revoked.
func (h *hub) removeSubject(ctx context.Context, consultationID, subject string) {
	if subject == "" {
		return
	}
	h.mu.Lock()
	h.kicked[linkKey(consultationID, "", subject)] = struct{}{}
	r := h.rooms[consultationID]
	if r == nil {
		h.mu.Unlock()
		return
	}
	var gone []*participant
	var conns []*conn
	for _, tp := range r.members {
		if tp.subject != subject {
			continue
		}
		m, _ := r.state.Remove(tp.id)
		gone = append(gone, tp)
		conns = append(conns, h.removedLocked(tp, m.Admitted()))
	}
	h.mu.Unlock()
	for i, tp := range gone {
		h.afterRemoval(ctx, "", tp, conns[i])
	}
}

// removedLocked tells a removed participant and the others, and forgets the participant; it returns
// the connection to close once the lock is released. tp is already out of the room's state.
func (h *hub) removedLocked(tp *participant, wasAdmitted bool) *conn {
	r := tp.room
	h.router.Send(tp.id, encode(protocol.Envelope{Type: protocol.TypeRemoved}))
	conn := tp.conn
	h.removeLocked(tp)
	if wasAdmitted {
		left := encode(protocol.PeerLeft{Type: protocol.TypePeerLeft, Peer: tp.id, Reason: protocol.ReasonRemoved})
		for _, o := range r.state.Admitted() {
			h.router.Send(o.ID, left)
		}
	} else {
		h.sendLobbyLocked(r)
	}
	return conn
}

// afterRemoval closes a removed participant's connection, stops their link in the store and audits
// it; by is who removed them ("" for a revoked invitation, which the HTTP side audits).
func (h *hub) afterRemoval(ctx context.Context, by string, tp *participant, c *conn) {
	if c != nil {
		c.close(closeNormal, protocol.ReasonRemoved)
	}
	if err := h.opts.Removed(ctx, tp.room.id, tp.role, tp.subject); err != nil {
		// This node still refuses the link (kicked); another node, or this one restarted, would not.
		h.opts.Logger.Error("remove: could not stop the link", "consultation", tp.room.id, "participant", tp.id, "err", err)
	}
	tp.log.Info("removed", "by", by)
	if by != "" {
		h.opts.Audit(ctx, consult.AuditEvent{Actor: by, Action: consult.AuditRemoved, ConsultationID: tp.room.id,
			Detail: tp.id + " " + string(tp.role)})
	}
}

// media records p's media state and tells the others in the call.
func (h *hub) media(p *participant, media consult.Media) *protocol.Error {
	h.mu.Lock()
	defer h.mu.Unlock()
	m, err := p.room.state.SetMedia(p.id, media)
	if err != nil {
		if errors.Is(err, consult.ErrForbidden) {
			return &protocol.Error{Code: errcode.Forbidden, Message: "You may share your screen only once the provider allows it."}
		}
		return roomError(err)
	}
	h.sendMediaLocked(p.room, m)
	return nil
}

func (h *hub) sendMediaLocked(r *room, m consult.Member) {
	msg := encode(protocol.Media{Type: protocol.TypeMedia, Peer: m.ID,
		MediaState: protocol.MediaState{Audio: m.Media.Audio, Video: m.Media.Video, Screen: m.Media.Screen}})
	for _, o := range r.state.Admitted() {
		if o.ID != m.ID && consult.Connects(o.Role, m.Role) {
			h.router.Send(o.ID, msg)
		}
	}
}

// allowShare lets a patient or guest share a screen, or takes it back.
func (h *hub) allowShare(p *participant, who string, allowed bool) *protocol.Error {
	h.mu.Lock()
	defer h.mu.Unlock()
	before, _ := p.room.state.Member(who)
	m, err := p.room.state.AllowShare(p.id, who, allowed)
	if err != nil {
		return roomError(err)
	}
	if !m.Role.Admits() {
		h.router.Send(who, encode(protocol.ShareAllowed{Type: protocol.TypeShareAllowed, Allowed: m.CanShare}))
	}
	if before.Media.Screen && !m.Media.Screen {
		h.sendMediaLocked(p.room, m)
	}
	return nil
}
