package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/telemed/telemed/client"
	"github.com/telemed/telemed/internal/consult"
)

// BenchmarkSignalingSteps times, one at a time, the steps that the server adds to a join, with bare
// WebSocket clients against a real server on loopback:
//
//	dial       TCP connect and the WebSocket upgrade of GET /ws
//	join       on an open socket, join until welcome (checks the link, records the audit line)
//	ping       ping until pong on a joined socket: a round trip through the server's loops
//	relay      an offer from the patient to the provider and an answer back (SDPs of 2.4 KB)
//	linkcheck  consultations.Admit, the check of a link that join runs (two SQLite reads)
//	audit      consultations.Audit, the audit line that join, admit and leave write (one SQLite insert)
//
// A client may send 50 messages a second with bursts of 200, so ping and relay change connections
// every 100 messages, outside the timer.
func BenchmarkSignalingSteps(b *testing.B) {
	e := startServer(b)
	c := e.newConsultation(b)
	wsURL, id, token, err := client.ParseLink(c.JoinURL)
	if err != nil {
		b.Fatal(err)
	}

	b.Run("dial", func(b *testing.B) {
		for range b.N {
			r := dialRaw(b, wsURL)
			b.StopTimer()
			r.ws.CloseNow()
			b.StartTimer()
		}
	})
	b.Run("join", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			r := dialRaw(b, wsURL)
			b.StartTimer()
			r.send(b, joinMessage(id, token, "Ada Lovelace"))
			r.read(b, "welcome")
			b.StopTimer()
			r.leave(b)
			b.StartTimer()
		}
	})
	b.Run("ping", func(b *testing.B) {
		var r *raw
		for i := range b.N {
			if i%100 == 0 {
				b.StopTimer()
				if r != nil {
					r.leave(b)
				}
				r = dialRaw(b, wsURL)
				r.send(b, joinMessage(id, token, "Ada Lovelace"))
				r.read(b, "welcome")
				b.StartTimer()
			}
			r.send(b, `{"type":"ping"}`)
			r.read(b, "pong")
		}
		b.StopTimer()
		r.leave(b)
	})
	b.Run("relay", func(b *testing.B) {
		var pair *relayPair
		for i := range b.N {
			if i%100 == 0 {
				b.StopTimer()
				pair.hangUp(b)
				pair = openRelayPair(b, c.StartURL, c.JoinURL)
				b.StartTimer()
			}
			pair.roundTrip(b)
		}
		b.StopTimer()
		pair.hangUp(b)
	})
	b.Run("linkcheck", func(b *testing.B) {
		for range b.N {
			if _, err := e.svc.Consultations.Admit(context.Background(), id, token); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("audit", func(b *testing.B) {
		for range b.N {
			e.svc.Consultations.Audit(context.Background(), consult.AuditEvent{Actor: "bench", Action: consult.AuditJoined, ConsultationID: id, Detail: "bench"})
		}
	})
}

// joinMessage is the join of a bare client to consultation id with a link's token.
func joinMessage(id, token, name string) string {
	return fmt.Sprintf(`{"type":"join","version":1,"consultation":%q,"token":%q,"name":%q}`, id, token, name)
}

// relaySDP stands in for an SDP: 2.4 KB, about a real one's size with its candidates.
var relaySDP = "v=0\r\n" + strings.Repeat("a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host\r\n", 40)

// relayPair is a provider and an admitted patient on bare connections, with an offer and an answer
// addressed to each other.
type relayPair struct {
	prov, pat     *raw
	offer, answer string
}

// openRelayPair joins a provider with startURL and a patient with joinURL (the links may name
// different nodes) and admits the patient. A client may send 50 messages a second with bursts of
// 200, so a pair is good for 100 round trips.
func openRelayPair(tb testing.TB, startURL, joinURL string) *relayPair {
	provWS, id, provToken, err := client.ParseLink(startURL)
	if err != nil {
		tb.Fatal(err)
	}
	patWS, _, token, err := client.ParseLink(joinURL)
	if err != nil {
		tb.Fatal(err)
	}
	p := &relayPair{prov: dialRaw(tb, provWS), pat: dialRaw(tb, patWS)}
	p.prov.send(tb, joinMessage(id, provToken, ""))
	provID := p.prov.read(tb, "welcome").You.ID
	p.pat.send(tb, joinMessage(id, token, "Ada Lovelace"))
	patID := p.pat.read(tb, "welcome").You.ID
	p.prov.read(tb, "lobby")
	p.prov.send(tb, fmt.Sprintf(`{"type":"admit","peer":%q}`, patID))
	p.pat.read(tb, "admitted")
	p.offer = fmt.Sprintf(`{"type":"offer","to":%q,"sdp":%q}`, provID, relaySDP)
	p.answer = fmt.Sprintf(`{"type":"answer","to":%q,"sdp":%q}`, patID, relaySDP)
	return p
}

// roundTrip sends the offer from the patient to the provider and the answer back.
func (p *relayPair) roundTrip(tb testing.TB) {
	p.pat.send(tb, p.offer)
	p.prov.read(tb, "offer")
	p.prov.send(tb, p.answer)
	p.pat.read(tb, "answer")
}

// hangUp hangs up both; a nil pair is none.
func (p *relayPair) hangUp(tb testing.TB) {
	if p != nil {
		p.pat.leave(tb)
		p.prov.leave(tb)
	}
}

// raw is a bare signaling connection.
type raw struct {
	ws *websocket.Conn
}

func dialRaw(b testing.TB, wsURL string) *raw {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, wsURL, nil)
	if err != nil {
		b.Fatalf("dial: %v", err)
	}
	return &raw{ws: ws}
}

// leave hangs up and waits for the server to close the socket, so that the leave has been handled.
func (r *raw) leave(b testing.TB) {
	r.send(b, `{"type":"leave"}`)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if _, _, err := r.ws.Read(ctx); err != nil {
			break
		}
	}
	r.ws.CloseNow()
}

func (r *raw) send(b testing.TB, msg string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		b.Fatalf("send: %v", err)
	}
}

type rawMessage struct {
	Type string `json:"type"`
	Code string `json:"code"`
	You  struct {
		ID string `json:"id"`
	} `json:"you"`
}

// read reads until a message of type typ, skipping others; an error message fails the benchmark.
func (r *raw) read(b testing.TB, typ string) rawMessage {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, data, err := r.ws.Read(ctx)
		if err != nil {
			b.Fatalf("waiting for %s: %v", typ, err)
		}
		var m rawMessage
		if err := json.Unmarshal(data, &m); err != nil {
			b.Fatalf("bad message %q: %v", data, err)
		}
		if m.Type == typ {
			return m
		}
		if m.Type == "error" {
			b.Fatalf("waiting for %s: error %s", typ, m.Code)
		}
	}
}
