package hub

import (
	"context"
	"time"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/signal/rooms"
	"github.com/telemed/telemed/internal/signal/route"
	"github.com/telemed/telemed/protocol"
)

// Kick disconnects, from every consultation, the participants whose link was issued to subject (a
// device that has been revoked). They are told why and cannot resume.
func (h *Hub) Kick(ctx context.Context, subject string) {
	if subject == "" {
		return
	}
	h.mu.Lock()
	h.revoked[subject] = true
	h.mu.Unlock()
	ids, err := h.rooms.IDs(ctx)
	if err != nil {
		h.o.Logger.Error("revoked device: the rooms could not be reached", "device", subject, "err", err)
		return
	}
	msg := encode(protocol.ErrorMessage{Type: protocol.TypeError, Code: errcode.BadToken, Message: "This device has been revoked."})
	for _, id := range ids {
		holds := false
		h.rooms.View(ctx, id, func(r *rooms.Room) {
			for _, pp := range r.People {
				holds = holds || pp.Subject == subject
			}
		})
		if !holds {
			continue // only the rooms with the device are changed (and locked)
		}
		var left []string
		err := h.update(ctx, id, func(r *rooms.Room, rt route.Router) error {
			if r.Stopped == nil {
				r.Stopped = map[string]bool{}
			}
			r.Stopped[linkKey(id, consult.RoleDevice, subject)] = true
			for pid, pp := range r.People {
				if pp.Subject != subject || r.State == nil {
					continue
				}
				m, _ := r.State.Remove(pid)
				rt.Send(pid, msg)
				rt.Close(pid, route.ClosePolicy, string(errcode.BadToken))
				h.takeOut(rt, r, pid, m.Admitted(), protocol.ReasonLeft)
				left = append(left, pid)
			}
			return nil
		})
		if err != nil {
			h.o.Logger.Error("revoked device: the rooms could not be reached", "device", subject, "consultation", id, "err", err)
		}
		for _, pid := range left {
			h.o.Audit(ctx, consult.AuditEvent{Actor: pid, Action: consult.AuditLeft, ConsultationID: id, Detail: protocol.ReasonLeft})
		}
	}
}

// End disconnects everyone in a consultation that has been ended.
func (h *Hub) End(ctx context.Context, id string) {
	msg := encode(protocol.ErrorMessage{Type: protocol.TypeError, Code: errcode.Ended, Message: "This consultation has ended."})
	err := h.update(ctx, id, func(r *rooms.Room, rt route.Router) error {
		for pid := range r.People {
			rt.Send(pid, msg)
			rt.Close(pid, route.ClosePolicy, string(errcode.Ended))
			rt.Forget(pid)
		}
		clear(r.People)
		return nil
	})
	if err != nil {
		h.o.Logger.Error("end: the rooms could not be reached", "consultation", id, "err", err)
	}
}

// Shutdown closes this node's connections; their clients reconnect, to another node or to this one
// once it is back, and resume. Their places are marked lost now, rather than when another node
// notices that this one's heartbeat stopped, so that the grace period starts at once.
func (h *Hub) Shutdown(ctx context.Context) {
	h.mu.Lock()
	h.closed = true
	held := make([]*Place, 0, len(h.local))
	for _, p := range h.local {
		held = append(held, p)
	}
	for id, t := range h.grace {
		t.Stop()
		delete(h.grace, id)
	}
	h.mu.Unlock()
	lost := time.Now()
	for _, p := range held {
		err := h.update(ctx, p.roomID, func(r *rooms.Room, rt route.Router) error {
			if pp := r.People[p.id]; pp != nil && pp.Conn == p.connKey {
				pp.Conn, pp.LostAt = "", lost
				rt.Detach(p.id, p.conn)
			}
			return nil
		})
		if err != nil {
			p.log.Error("shutdown: could not mark the place lost", "err", err)
		}
	}
	for _, p := range held {
		p.conn.Close(route.CloseGoingAway, "server shutting down")
	}
}

// sweepEvery is how often each node looks for places whose connection is lost for good: held by a
// node that stopped without saying so, or lost longer than the grace period.
func (h *Hub) sweepEvery() time.Duration {
	return min(max(h.o.ResumeGrace/4, 100*time.Millisecond), 5*time.Second)
}

// SweepLoop sweeps until ctx ends.
func (h *Hub) SweepLoop(ctx context.Context) {
	t := time.NewTicker(h.sweepEvery())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.sweep(ctx)
		}
	}
}

// sweep marks lost the places held by nodes that are gone, and takes out the places lost longer than
// the grace period. Every node sweeps every room; the conditions, checked inside each update, make
// a place go once.
func (h *Hub) sweep(ctx context.Context) {
	ids, err := h.rooms.IDs(ctx)
	if err != nil {
		return // readiness reports it; the next sweep tries again
	}
	alive := map[string]bool{h.o.Node: true}
	isAlive := func(node string) bool {
		up, ok := alive[node]
		if !ok {
			var err error
			if up, err = h.o.NodeAlive(ctx, node); err != nil {
				up = true // unknown is not dead
			}
			alive[node] = up
		}
		return up
	}
	mine := h.heldPlaces()
	for _, id := range ids {
		h.sweepRoom(ctx, id, isAlive, mine)
	}
}

// sweepRoom is sweep for one room. mine are the places held by this node's open connections, by
// participant: a place of them that another node marked lost (it missed this node's heartbeat, as
// when Redis was out longer than the heartbeat lasts) is claimed back, not left to expire.
func (h *Hub) sweepRoom(ctx context.Context, id string, isAlive func(node string) bool, mine map[string]*Place) {
	var stale map[string]string // participant → the connection of a gone node
	var expired, reclaim []string
	now := time.Now()
	h.rooms.View(ctx, id, func(r *rooms.Room) {
		if r == nil {
			return
		}
		for pid, pp := range r.People {
			switch {
			case pp.Conn == "" && mine[pid] != nil && mine[pid].roomID == id:
				reclaim = append(reclaim, pid)
			case pp.Conn == "" && now.Sub(pp.LostAt) > h.o.ResumeGrace:
				expired = append(expired, pid)
			case pp.Conn != "" && (!isAlive(pp.Node()) || (pp.Node() == h.o.Node && !h.open(pp.Conn))):
				// Held by a node that is gone, or by a connection of this node that has gone
				// without its loss being written (Redis was out).
				if stale == nil {
					stale = map[string]string{}
				}
				stale[pid] = pp.Conn
			}
		}
	})
	if len(stale) > 0 || len(reclaim) > 0 {
		h.update(ctx, id, func(r *rooms.Room, rt route.Router) error {
			for pid, conn := range stale {
				if pp := r.People[pid]; pp != nil && pp.Conn == conn {
					pp.Conn, pp.LostAt = "", now
				}
			}
			for _, pid := range reclaim {
				if pp, p := r.People[pid], mine[pid]; pp != nil && pp.Conn == "" && !p.lost.Load() {
					pp.Conn, pp.LostAt = p.connKey, time.Time{}
				}
			}
			return nil
		})
	}
	for _, pid := range expired {
		h.leaveIf(ctx, id, pid, protocol.ReasonDisconnected, func(pp *rooms.Person) bool {
			return pp.Conn == "" && time.Since(pp.LostAt) > h.o.ResumeGrace
		})
	}
}
