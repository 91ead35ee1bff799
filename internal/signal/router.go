// Package signal is telemed's signaling server: one loop per WebSocket client, and the hub that keeps
// each consultation's waiting room and relays offers, answers and ICE candidates between its admitted
// members (docs/signaling.md). Media never passes through it.
package signal

import "sync"

// Sender is a live connection that can take an encoded message without blocking.
type Sender interface {
	// Send queues msg for the client and reports whether it was taken.
	Send(msg []byte) bool
}

// Router carries encoded messages to participants wherever their connection is. The hub reaches
// participants only through it, so a Router shared between nodes (over Redis, say) lets participants of
// one consultation connect to different nodes.
type Router interface {
	// Attach binds a participant to its live connection, sends first, then whatever was queued while
	// it was away.
	Attach(participantID string, s Sender, first []byte)
	// Detach marks a participant's connection lost if s is still its connection; messages for it are
	// queued until it attaches again or is forgotten.
	Detach(participantID string, s Sender)
	// Send delivers msg to a participant, or queues it while the participant is detached.
	Send(participantID string, msg []byte)
	// Forget drops a participant and anything queued for it.
	Forget(participantID string)
}

// maxQueued bounds what is kept for a participant while its connection is down: enough for a
// renegotiation and its candidates, not an unbounded memory sink.
const maxQueued = 256

// LocalRouter is the Router of a single node.
type LocalRouter struct {
	mu    sync.Mutex
	boxes map[string]*mailbox
}

type mailbox struct {
	sender Sender
	queue  [][]byte
}

// NewLocalRouter returns an empty LocalRouter.
func NewLocalRouter() *LocalRouter { return &LocalRouter{boxes: make(map[string]*mailbox)} }

// Attach implements Router.
func (r *LocalRouter) Attach(id string, s Sender, first []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.boxes[id]
	if b == nil {
		b = &mailbox{}
		r.boxes[id] = b
	}
	b.sender = s
	s.Send(first)
	for _, m := range b.queue {
		s.Send(m)
	}
	b.queue = nil
}

// Detach implements Router.
func (r *LocalRouter) Detach(id string, s Sender) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b := r.boxes[id]; b != nil && b.sender == s {
		b.sender = nil
	}
}

// Send implements Router.
func (r *LocalRouter) Send(id string, msg []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.boxes[id]
	switch {
	case b == nil:
	case b.sender != nil:
		b.sender.Send(msg)
	case len(b.queue) < maxQueued:
		b.queue = append(b.queue, msg)
	}
}

// Forget implements Router.
func (r *LocalRouter) Forget(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.boxes, id)
}
