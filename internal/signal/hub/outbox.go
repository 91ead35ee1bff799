package hub

import (
	"context"

	"github.com/telemed/telemed/internal/signal/rooms"
	"github.com/telemed/telemed/internal/signal/route"
)

// update changes a room with fn, whose messages go out once the change is kept: fn sees a
// route.Outbox, replayed inside the room's lock once the room is kept, so that a participant told of
// a change (its admission, say) can act on it at once, on any node, and find the room changed. An
// error of an Attach (the router cannot be reached) is returned after the change is kept.
func (h *Hub) update(ctx context.Context, id string, fn func(r *rooms.Room, rt route.Router) error) error {
	var out route.Outbox
	var sendErr error
	err := h.rooms.Update(ctx, id, func(r *rooms.Room) error {
		out = route.Outbox{}
		return fn(r, &out)
	}, func() { sendErr = out.Replay(h.router) })
	if err != nil {
		return err
	}
	return sendErr
}
