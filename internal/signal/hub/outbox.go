package hub

import (
	"context"

	"github.com/telemed/telemed/internal/signal/rooms"
	"github.com/telemed/telemed/internal/signal/route"
)

// outbox is the route.Router an update sees: it keeps what the update would send, and the hub sends
// it once the room is kept, before anyone else may change it. A participant told of a change (its
// admission, say) can then act on it at once, on any node, and find the room changed.
type outbox struct {
	ops []func(route.Router) error
	// sends are the messages of ops that are plain sends, by index in ops, to be sent together by a
	// route.Batcher.
	sends map[int]route.Message
}

var _ route.Router = (*outbox)(nil)

func (o *outbox) Attach(id string, s route.Sender, first []byte, after uint64) error {
	o.ops = append(o.ops, func(r route.Router) error { return r.Attach(id, s, first, after) })
	return nil
}

func (o *outbox) Detach(id string, s route.Sender) {
	o.ops = append(o.ops, func(r route.Router) error { r.Detach(id, s); return nil })
}

func (o *outbox) Send(id string, msg []byte) {
	if o.sends == nil {
		o.sends = map[int]route.Message{}
	}
	o.sends[len(o.ops)] = route.Message{To: id, Msg: msg}
	o.ops = append(o.ops, func(r route.Router) error { r.Send(id, msg); return nil })
}

// replay does the ops with r, in order; runs of sends go together when r is a route.Batcher.
func (o *outbox) replay(r route.Router) error {
	var first error
	b, batches := r.(route.Batcher)
	var run []route.Message
	flush := func() {
		if len(run) > 0 {
			b.SendAll(run)
			run = run[:0]
		}
	}
	for i, op := range o.ops {
		if m, ok := o.sends[i]; ok && batches {
			run = append(run, m)
			continue
		}
		if batches {
			flush()
		}
		if err := op(r); err != nil && first == nil {
			first = err
		}
	}
	if batches {
		flush()
	}
	return first
}

func (o *outbox) Close(id string, code int, reason string) {
	o.ops = append(o.ops, func(r route.Router) error { r.Close(id, code, reason); return nil })
}

func (o *outbox) Forget(id string) {
	o.ops = append(o.ops, func(r route.Router) error { r.Forget(id); return nil })
}

// update changes a room with fn, whose messages go out once the change is kept. An error of an
// Attach (the router cannot be reached) is returned after the change is kept.
func (h *Hub) update(ctx context.Context, id string, fn func(r *rooms.Room, rt route.Router) error) error {
	var out outbox
	var sendErr error
	err := h.rooms.Update(ctx, id, func(r *rooms.Room) error {
		out = outbox{}
		return fn(r, &out)
	}, func() { sendErr = out.replay(h.router) })
	if err != nil {
		return err
	}
	return sendErr
}
