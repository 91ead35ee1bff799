package hub

import (
	"context"
	"errors"
	"fmt"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/signal/rooms"
	"github.com/telemed/telemed/internal/signal/route"
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
	case errors.Is(err, ErrUnavailable):
		return &protocol.Error{Code: errcode.Unavailable, Message: "The server cannot reach its database just now, so it cannot check this link. Please try again in a moment."}
	default:
		return &protocol.Error{Code: errcode.Internal, Message: "The server could not check this link. Please try again in a moment."}
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

// Remove takes a person out of the consultation at the word of a provider or clinician, and stops
// their link.
func (h *Hub) Remove(ctx context.Context, p *Place, who string) *protocol.Error {
	var target rooms.Person
	err := h.update(ctx, p.roomID, func(r *rooms.Room, rt route.Router) error {
		if r.State == nil {
			return errGone
		}
		m, err := r.State.RemoveBy(p.id, who)
		if err != nil {
			if errors.Is(err, consult.ErrForbidden) && p.role.Admits() {
				return &protocol.Error{Code: errcode.Forbidden, Message: "The provider and devices cannot be removed from a consultation."}
			}
			return roomError(err)
		}
		target = *r.People[who]
		h.removed(rt, r, who, m.Admitted())
		return nil
	})
	if err != nil {
		return h.failed("remove", err)
	}
	h.afterRemoval(ctx, p.id, p.roomID, who, target)
	return nil
}

// RemoveSubject removes whoever holds the invitation subject in a consultation: it was revoked.
func (h *Hub) RemoveSubject(ctx context.Context, consultationID, subject string) {
	if subject == "" {
		return
	}
	gone := map[string]rooms.Person{}
	err := h.update(ctx, consultationID, func(r *rooms.Room, rt route.Router) error {
		if r.State == nil {
			return nil
		}
		if r.Stopped == nil {
			r.Stopped = map[string]bool{}
		}
		r.Stopped[linkKey(r.ID, "", subject)] = true
		for id, pp := range r.People {
			if pp.Subject != subject {
				continue
			}
			m, _ := r.State.Remove(id)
			gone[id] = *pp
			h.removed(rt, r, id, m.Admitted())
		}
		return nil
	})
	if err != nil {
		h.o.Logger.Error("revoked invitation: the rooms could not be reached", "consultation", consultationID, "err", err)
	}
	for id, pp := range gone {
		h.afterRemoval(ctx, "", consultationID, id, pp)
	}
}

// removed stops the link of id, already out of r.State, tells them and the others, and forgets them.
func (h *Hub) removed(rt route.Router, r *rooms.Room, id string, wasAdmitted bool) {
	pp := r.People[id]
	if key := linkKey(r.ID, pp.Role, pp.Subject); key != "" {
		if r.Stopped == nil {
			r.Stopped = map[string]bool{}
		}
		r.Stopped[key] = true
	}
	rt.Send(id, encode(protocol.Envelope{Type: protocol.TypeRemoved}))
	rt.Close(id, route.CloseNormal, protocol.ReasonRemoved)
	h.takeOut(rt, r, id, wasAdmitted, protocol.ReasonRemoved)
}

// afterRemoval stops a removed participant's link in the store and audits it; by is who removed
// them ("" for a revoked invitation, which the HTTP side audits).
func (h *Hub) afterRemoval(ctx context.Context, by, roomID, id string, pp rooms.Person) {
	if err := h.o.Removed(ctx, roomID, pp.Role, pp.Subject); err != nil {
		// The room still refuses the link (Stopped) while it lasts; a later call would not.
		h.o.Logger.Error("remove: could not stop the link", "consultation", roomID, "participant", id, "err", err)
	}
	h.o.Logger.Info("removed", "consultation", roomID, "participant", id, "by", by)
	if by != "" {
		h.o.Audit(ctx, consult.AuditEvent{Actor: by, Action: consult.AuditRemoved, ConsultationID: roomID,
			Detail: id + " " + string(pp.Role)})
	}
}

// Media records p's media state and tells the others in the call.
func (h *Hub) Media(ctx context.Context, p *Place, media consult.Media) *protocol.Error {
	err := h.update(ctx, p.roomID, func(r *rooms.Room, rt route.Router) error {
		if r.State == nil {
			return errGone
		}
		m, err := r.State.SetMedia(p.id, media)
		if err != nil {
			if errors.Is(err, consult.ErrForbidden) {
				return &protocol.Error{Code: errcode.Forbidden, Message: "You may share your screen only once the provider allows it."}
			}
			return roomError(err)
		}
		h.sendMedia(rt, r, m)
		return nil
	})
	if err != nil {
		return h.failed("media", err)
	}
	return nil
}

func (h *Hub) sendMedia(rt route.Router, r *rooms.Room, m consult.Member) {
	msg := encode(protocol.Media{Type: protocol.TypeMedia, Peer: m.ID,
		MediaState: protocol.MediaState{Audio: m.Media.Audio, Video: m.Media.Video, Screen: m.Media.Screen}})
	for _, o := range r.State.Admitted() {
		if o.ID != m.ID && consult.Connects(o.Role, m.Role) {
			rt.Send(o.ID, msg)
		}
	}
}

// AllowShare lets a patient or guest share a screen, or takes it back.
func (h *Hub) AllowShare(ctx context.Context, p *Place, who string, allowed bool) *protocol.Error {
	err := h.update(ctx, p.roomID, func(r *rooms.Room, rt route.Router) error {
		if r.State == nil {
			return errGone
		}
		before, _ := r.State.Member(who)
		m, err := r.State.AllowShare(p.id, who, allowed)
		if err != nil {
			return roomError(err)
		}
		if !m.Role.Admits() {
			rt.Send(who, encode(protocol.ShareAllowed{Type: protocol.TypeShareAllowed, Allowed: m.CanShare}))
		}
		if before.Media.Screen && !m.Media.Screen {
			h.sendMedia(rt, r, m)
		}
		return nil
	})
	if err != nil {
		return h.failed("allow_share", err)
	}
	return nil
}
