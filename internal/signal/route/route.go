// Package route carries the signaling server's messages to participants wherever their connection
// is, numbering them so that a participant that resumes gets what it missed. It knows nothing of
// rooms: the hub decides who is told what, the router only delivers.
package route

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
)

// Sender is a live connection that can take an encoded message without blocking.
type Sender interface {
	// Send queues msg for the client and reports whether it was taken.
	Send(msg []byte) bool
	// Close closes the connection, with a WebSocket close code and reason, once what was queued
	// before is written.
	Close(code int, reason string)
}

// Close codes a Router passes on to Sender.Close.
const (
	CloseNormal    = 1000
	CloseGoingAway = 1001
	ClosePolicy    = 1008
	ReasonReplaced = "replaced by a newer connection"
)

// Router carries encoded messages to participants wherever their connection is. The hub reaches
// participants only through it, so a Router shared between nodes (over Redis, say) lets participants of
// one consultation connect to different nodes.
//
// Every message to a participant gets the next number of that participant's sequence ("seq"), and the
// latest are kept: a participant that resumes says the last number it received and gets what came
// after, including what was written into a connection that had died before the server noticed.
type Router interface {
	// Attach binds a participant to its live connection, sends first (unnumbered), then the kept
	// messages numbered above after. A connection it had before, on any node, is closed.
	Attach(participantID string, s Sender, first []byte, after uint64) error
	// Detach marks a participant's connection lost if s is still its connection; messages for it are
	// kept until it attaches again or is forgotten.
	Detach(participantID string, s Sender)
	// Send numbers msg, keeps it, and delivers it if the participant is connected.
	Send(participantID string, msg []byte)
	// Close closes the participant's live connection, wherever it is, after what was sent to it.
	Close(participantID string, code int, reason string)
	// Forget drops a participant and what was kept for it.
	Forget(participantID string)
}

// Message is a message for one participant, for SendAll.
type Message struct {
	To  string
	Msg []byte
}

// Batcher is a Router that sends several messages at once, each as Send would, in order: the hub
// sends a change's messages together (one round trip to Redis rather than one each).
type Batcher interface {
	SendAll(msgs []Message)
}

// kept bounds what is kept for each participant: enough for a renegotiation and its candidates
// during a network blip, not an unbounded memory sink.
const kept = 128

// Local is the Router of a single node.
type Local struct {
	mu    sync.Mutex
	boxes map[string]*mailbox
}

type numbered struct {
	seq uint64
	msg []byte
}

type mailbox struct {
	sender Sender
	seq    uint64
	recent []numbered // the last `kept` messages, oldest first
}

// NewLocal returns an empty Local.
func NewLocal() *Local { return &Local{boxes: make(map[string]*mailbox)} }

// withSeq puts "seq":n first in an encoded JSON object.
func withSeq(n uint64, msg []byte) []byte {
	out := make([]byte, 0, len(msg)+24)
	out = append(out, `{"seq":`...)
	out = strconv.AppendUint(out, n, 10)
	if len(msg) > 2 {
		out = append(out, ',')
	}
	return append(out, msg[1:]...)
}

// Attach implements Router.
func (r *Local) Attach(id string, s Sender, first []byte, after uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.boxes[id]
	if b == nil {
		b = &mailbox{}
		r.boxes[id] = b
	}
	if b.sender != nil && b.sender != s {
		// The old socket has not noticed it is dead yet; it must not take the place down with it.
		b.sender.Close(ClosePolicy, ReasonReplaced)
	}
	b.sender = s
	s.Send(first)
	for _, m := range b.recent {
		if m.seq > after {
			s.Send(m.msg)
		}
	}
	return nil
}

// Detach implements Router.
func (r *Local) Detach(id string, s Sender) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b := r.boxes[id]; b != nil && b.sender == s {
		b.sender = nil
	}
}

// Send implements Router.
func (r *Local) Send(id string, msg []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.boxes[id]
	if b == nil {
		return
	}
	b.seq++
	m := numbered{b.seq, withSeq(b.seq, msg)}
	if len(b.recent) == kept {
		copy(b.recent, b.recent[1:])
		b.recent = b.recent[:kept-1]
	}
	b.recent = append(b.recent, m)
	if b.sender != nil && !b.sender.Send(m.msg) {
		b.sender = nil // the connection is closing: keep the rest for a resume
	}
}

// Close implements Router.
func (r *Local) Close(id string, code int, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b := r.boxes[id]; b != nil && b.sender != nil {
		b.sender.Close(code, reason)
		b.sender = nil
	}
}

// Forget implements Router.
func (r *Local) Forget(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.boxes, id)
}

// exported is a mailbox as Export writes it.
type exported struct {
	Seq    uint64   `json:"seq"`
	Recent [][]byte `json:"recent"`
}

// Export encodes every participant's sequence and kept messages (not their connections), for
// Import after a restart: a participant that resumes then gets what it missed, numbered on.
func (r *Local) Export() ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]exported, len(r.boxes))
	for id, b := range r.boxes {
		e := exported{Seq: b.seq, Recent: make([][]byte, len(b.recent))}
		for i, m := range b.recent {
			e.Recent[i] = m.msg
		}
		out[id] = e
	}
	return json.Marshal(out)
}

// Import adds the participants that Export encoded.
func (r *Local) Import(data []byte) error {
	var in map[string]exported
	if err := json.Unmarshal(data, &in); err != nil {
		return fmt.Errorf("import mailboxes: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, e := range in {
		b := &mailbox{seq: e.Seq}
		first := e.Seq - uint64(len(e.Recent)) + 1
		for i, msg := range e.Recent {
			b.recent = append(b.recent, numbered{first + uint64(i), msg})
		}
		r.boxes[id] = b
	}
	return nil
}
