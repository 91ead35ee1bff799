package route

// Outbox is a Router that sends nothing: it keeps what it is asked, for Replay on a real Router
// later, in order. The hub sends a room change's messages through one, replayed once the change is
// kept.
type Outbox struct {
	ops []func(Router) error
	// sends are the messages of ops that are plain sends, by index in ops, to be sent together by a
	// Batcher.
	sends map[int]Message
}

var _ Router = (*Outbox)(nil)

// Attach implements Router: kept for Replay.
func (o *Outbox) Attach(id string, s Sender, first []byte, after uint64) error {
	o.ops = append(o.ops, func(r Router) error { return r.Attach(id, s, first, after) })
	return nil
}

// Detach implements Router: kept for Replay.
func (o *Outbox) Detach(id string, s Sender) {
	o.ops = append(o.ops, func(r Router) error { r.Detach(id, s); return nil })
}

// Send implements Router: kept for Replay.
func (o *Outbox) Send(id string, msg []byte) {
	if o.sends == nil {
		o.sends = map[int]Message{}
	}
	o.sends[len(o.ops)] = Message{To: id, Msg: msg}
	o.ops = append(o.ops, func(r Router) error { r.Send(id, msg); return nil })
}

// Replay does what was kept with r, in order; runs of sends go together when r is a Batcher.
func (o *Outbox) Replay(r Router) error {
	var first error
	b, batches := r.(Batcher)
	var run []Message
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

// Close implements Router: kept for Replay.
func (o *Outbox) Close(id string, code int, reason string) {
	o.ops = append(o.ops, func(r Router) error { r.Close(id, code, reason); return nil })
}

// Forget implements Router: kept for Replay.
func (o *Outbox) Forget(id string) {
	o.ops = append(o.ops, func(r Router) error { r.Forget(id); return nil })
}
