// Package routetest is the conformance suite of route.Router implementations: what the hub relies
// on, for one node and for two nodes sharing the router's state.
package routetest

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/telemed/telemed/internal/signal/route"
)

// Sender is a route.Sender that records what it was given.
type Sender struct {
	mu     sync.Mutex
	msgs   []string
	closed string
}

// Send implements route.Sender.
func (s *Sender) Send(msg []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, string(msg))
	return true
}

// Close implements route.Sender.
func (s *Sender) Close(code int, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = fmt.Sprintf("%d %s", code, reason)
}

// Messages returns what s was given so far.
func (s *Sender) Messages() []string {
	m, _ := s.snapshot()
	return m
}

func (s *Sender) snapshot() ([]string, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.msgs...), s.closed
}

// wait waits until s has n messages (and, if closed is set, is closed), and returns them.
func (s *Sender) wait(t *testing.T, n int, closed bool) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		msgs, how := s.snapshot()
		if len(msgs) >= n && (!closed || how != "") {
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d messages %q (closed %q), want %d (closed %v)", len(msgs), msgs, how, n, closed)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func seqs(t *testing.T, msgs []string) string {
	t.Helper()
	var out []uint64
	for _, m := range msgs {
		var v struct {
			Seq uint64 `json:"seq"`
		}
		if err := json.Unmarshal([]byte(m), &v); err != nil {
			t.Fatalf("message %q is not JSON: %v", m, err)
		}
		out = append(out, v.Seq)
	}
	return fmt.Sprint(out)
}

// Run checks the routers that newNodes returns: two that share their state (two nodes of one
// cluster); for a single-node router both are the same. It is long because it is the list of cases,
// each a short subtest read best beside the others.
func Run(t *testing.T, newNodes func(t *testing.T) (a, b route.Router)) {
	t.Run("numbered in order, first unnumbered", func(t *testing.T) {
		a, _ := newNodes(t)
		s := &Sender{}
		if err := a.Attach("p1", s, []byte(`{"type":"welcome"}`), 0); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 5; i++ {
			a.Send("p1", []byte(fmt.Sprintf(`{"type":"m","i":%d}`, i)))
		}
		a.Send("p1", []byte(`{}`))
		msgs := s.wait(t, 7, false)
		if got := seqs(t, msgs); got != "[0 1 2 3 4 5 6]" {
			t.Fatalf("seqs %s, want the welcome unnumbered then 1..6: %q", got, msgs)
		}
		if msgs[6] != `{"seq":6}` || msgs[1] != `{"seq":1,"type":"m","i":0}` {
			t.Fatalf("messages are not the sent ones numbered: %q", msgs)
		}
	})
	t.Run("resume on the other node gets what was missed", func(t *testing.T) {
		a, b := newNodes(t)
		s1 := &Sender{}
		a.Attach("p2", s1, []byte(`{"type":"welcome"}`), 0)
		a.Send("p2", []byte(`{"type":"one"}`))
		s1.wait(t, 2, false)
		a.Detach("p2", s1)
		a.Send("p2", []byte(`{"type":"two"}`)) // while disconnected
		s2 := &Sender{}
		if err := b.Attach("p2", s2, []byte(`{"type":"welcome"}`), 1); err != nil {
			t.Fatal(err)
		}
		b.Send("p2", []byte(`{"type":"three"}`))
		a.Send("p2", []byte(`{"type":"four"}`)) // from the node it left
		msgs := s2.wait(t, 4, false)
		if got := seqs(t, msgs); got != "[0 2 3 4]" {
			t.Fatalf("after resuming from 1: seqs %s (%q), want [0 2 3 4]", got, msgs)
		}
		if m := s1.Messages(); len(m) != 2 {
			t.Fatalf("the detached connection got %q", m)
		}
	})
	t.Run("a newer connection closes the older, on any node", func(t *testing.T) {
		a, b := newNodes(t)
		old := &Sender{}
		a.Attach("p3", old, []byte(`{}`), 0)
		s := &Sender{}
		b.Attach("p3", s, []byte(`{}`), 0)
		old.wait(t, 1, true)
		if _, how := old.snapshot(); how != fmt.Sprintf("%d %s", route.ClosePolicy, route.ReasonReplaced) {
			t.Fatalf("old connection closed with %q", how)
		}
		b.Send("p3", []byte(`{"type":"x"}`))
		s.wait(t, 2, false)
		if m := old.Messages(); len(m) != 1 {
			t.Fatalf("the replaced connection still got messages: %q", m)
		}
	})
	t.Run("close comes after what was sent, from any node", func(t *testing.T) {
		a, b := newNodes(t)
		s := &Sender{}
		a.Attach("p4", s, []byte(`{}`), 0)
		b.Send("p4", []byte(`{"type":"removed"}`))
		b.Close("p4", route.CloseNormal, "removed")
		b.Forget("p4")
		msgs := s.wait(t, 2, true)
		if _, how := s.snapshot(); how != "1000 removed" || msgs[1] != `{"seq":1,"type":"removed"}` {
			t.Fatalf("got %q closed %q", msgs, how)
		}
		// Forgotten: nothing is kept, and the numbering would start afresh.
		s2 := &Sender{}
		a.Attach("p4", s2, []byte(`{}`), 0)
		a.Send("p4", []byte(`{}`))
		if got := seqs(t, s2.wait(t, 2, false)); got != "[0 1]" {
			t.Fatalf("after Forget, seqs %s, want [0 1]", got)
		}
	})
	t.Run("a batch is sent as its messages one by one", func(t *testing.T) {
		a, b := newNodes(t)
		batcher, ok := b.(route.Batcher)
		if !ok {
			t.Skip("not a route.Batcher")
		}
		s1, s2 := &Sender{}, &Sender{}
		a.Attach("p6", s1, []byte(`{}`), 0)
		a.Attach("p7", s2, []byte(`{}`), 0)
		batcher.SendAll([]route.Message{{To: "p6", Msg: []byte(`{"n":1}`)}, {To: "p7", Msg: []byte(`{"n":2}`)}, {To: "p6", Msg: []byte(`{"n":3}`)}})
		if got := s1.wait(t, 3, false); got[1] != `{"seq":1,"n":1}` || got[2] != `{"seq":2,"n":3}` {
			t.Fatalf("p6 got %q", got)
		}
		if got := s2.wait(t, 2, false); got[1] != `{"seq":1,"n":2}` {
			t.Fatalf("p7 got %q", got)
		}
	})
	t.Run("the replay window is bounded", func(t *testing.T) {
		a, _ := newNodes(t)
		s0 := &Sender{}
		a.Attach("p5", s0, []byte(`{}`), 0)
		a.Detach("p5", s0)
		for i := 0; i < 1000; i++ {
			a.Send("p5", []byte(`{}`))
		}
		s := &Sender{}
		a.Attach("p5", s, []byte(`{}`), 0)
		time.Sleep(50 * time.Millisecond)
		if m := s.Messages(); len(m) > 1+300 || len(m) < 1+100 {
			t.Fatalf("a resume replayed %d messages; the window keeps the last 128 or so", len(m)-1)
		}
	})
}
