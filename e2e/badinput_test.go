package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/telemed/telemed/client"
	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/server"
	"github.com/telemed/telemed/protocol"
)

// liveCall is a connected consultation between two Go clients whose data channel echoes, to show that
// a call carries on whatever others send the server.
type liveCall struct {
	provider, patient *client.Session
	dc                *webrtc.DataChannel
	echoes            chan string
}

func startLiveCall(t *testing.T, ctx context.Context, e *env) *liveCall {
	t.Helper()
	c := e.newConsultation(t, time.Hour)
	lc := &liveCall{echoes: make(chan string, 16)}
	opened := make(chan *webrtc.DataChannel, 1)
	var err error
	lc.provider, err = client.Join(ctx, client.Config{Link: c.StartURL, API: loopbackAPI(),
		OnDataChannel: func(_ *client.Peer, dc *webrtc.DataChannel) {
			dc.OnMessage(func(m webrtc.DataChannelMessage) { dc.SendText("echo " + string(m.Data)) })
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lc.provider.Close() })
	lc.patient, err = client.Join(ctx, client.Config{Link: c.JoinURL, Name: "Pat", API: loopbackAPI(),
		DataChannels: []client.DataChannelSpec{{Label: "check"}},
		OnDataChannel: func(_ *client.Peer, dc *webrtc.DataChannel) {
			dc.OnOpen(func() { opened <- dc })
			dc.OnMessage(func(m webrtc.DataChannelMessage) { lc.echoes <- string(m.Data) })
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lc.patient.Close() })
	if _, err := lc.provider.WaitWaiting(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lc.provider.Admit(ctx, lc.patient.ID()); err != nil {
		t.Fatal(err)
	}
	select {
	case lc.dc = <-opened:
	case <-ctx.Done():
		t.Fatal("live call: data channel did not open")
	}
	lc.check(t, ctx)
	return lc
}

// check shows the call still works: a message goes round trip, and neither side saw an error.
func (lc *liveCall) check(t *testing.T, ctx context.Context) {
	t.Helper()
	msg := fmt.Sprint("ping ", time.Now().UnixNano())
	if err := lc.dc.SendText(msg); err != nil {
		t.Fatalf("live call: send: %v", err)
	}
	select {
	case got := <-lc.echoes:
		if got != "echo "+msg {
			t.Fatalf("live call: echo %q, want %q", got, "echo "+msg)
		}
	case <-ctx.Done():
		t.Fatal("live call: no echo")
	}
	for _, s := range []*client.Session{lc.provider, lc.patient} {
		for drained := false; !drained; {
			select {
			case e := <-s.Events():
				if e.Type == client.EventError || e.Type == client.EventPeerLeft || e.Type == client.EventClosed || e.Type == client.EventReconnecting {
					t.Fatalf("live call disturbed: %s saw event %d (%v)", s.Role(), e.Type, e.Err)
				}
			default:
				drained = true
			}
		}
	}
}

func joinMsg(link, name string, version int) string {
	_, id, token, _ := client.ParseLink(link)
	return fmt.Sprintf(`{"type":"join","version":%d,"consultation":%q,"token":%q,"name":%q,"id":1}`, version, id, token, name)
}

// TestSignalingBadInput sends every kind of bad input the protocol documents, each on its own
// connection, while a call is under way, and checks each gets its documented error and the call and the
// server carry on.
func TestSignalingBadInput(t *testing.T) {
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	e := startServer(t, server.Options{Now: now})
	ctx := ctxTimeout(t, 60*time.Second)
	lc := startLiveCall(t, ctx, e)
	victim := e.newConsultation(t, time.Hour)
	_, victimID, victimToken, _ := client.ParseLink(victim.JoinURL)

	type outcome struct {
		code   errcode.Code
		closed bool // the server closes the connection after the error
	}
	cases := []struct {
		name   string
		joined bool // join the victim consultation (as patient) first
		send   func(t *testing.T, r *raw)
		want   outcome
	}{
		{"oversized message", true, func(t *testing.T, r *raw) {
			r.send(t, `{"type":"ping","pad":"`+strings.Repeat("x", protocol.MaxMessageSize)+`"}`)
		}, outcome{errcode.TooLarge, false}},
		{"malformed JSON", false, func(t *testing.T, r *raw) { r.send(t, `{"type": "join",`) }, outcome{errcode.BadJSON, false}},
		{"JSON that is not an object", false, func(t *testing.T, r *raw) { r.send(t, `["join"]`) }, outcome{errcode.BadJSON, false}},
		{"binary frame", false, func(t *testing.T, r *raw) {
			r.ws.Write(r.ctx, websocket.MessageBinary, []byte(`{"type":"ping"}`))
		}, outcome{errcode.BadJSON, false}},
		{"unknown type", true, func(t *testing.T, r *raw) { r.send(t, `{"type":"subscribe","id":3}`) }, outcome{errcode.UnknownType, false}},
		{"missing type", false, func(t *testing.T, r *raw) { r.send(t, `{"id":3}`) }, outcome{errcode.UnknownType, false}},
		{"field of the wrong type", true, func(t *testing.T, r *raw) { r.send(t, `{"type":"offer","to":7,"sdp":"v=0"}`) }, outcome{errcode.BadField, false}},
		{"offer without SDP", true, func(t *testing.T, r *raw) { r.send(t, `{"type":"offer","to":"p_x","sdp":"hello"}`) }, outcome{errcode.BadField, false}},
		{"message before join", false, func(t *testing.T, r *raw) {
			r.send(t, fmt.Sprintf(`{"type":"offer","to":%q,"sdp":"v=0\r\n"}`, lc.patient.ID()))
		}, outcome{errcode.NotJoined, false}},
		{"second join", true, func(t *testing.T, r *raw) { r.send(t, joinMsg(victim.JoinURL, "Again", 1)) }, outcome{errcode.AlreadyJoined, false}},
		{"patient admits", true, func(t *testing.T, r *raw) { r.send(t, `{"type":"admit","peer":"p_someone"}`) }, outcome{errcode.Forbidden, false}},
		{"offer from the waiting room", true, func(t *testing.T, r *raw) {
			r.send(t, fmt.Sprintf(`{"type":"offer","to":%q,"sdp":"v=0\r\n"}`, lc.provider.ID()))
		}, outcome{errcode.NotAdmitted, false}},
		{"wrong consultation", false, func(t *testing.T, r *raw) {
			r.send(t, fmt.Sprintf(`{"type":"join","version":1,"consultation":%q,"token":%q,"name":"M"}`, lc.patient.Welcome().Consultation.ID, victimToken))
		}, outcome{errcode.WrongConsultation, true}},
		{"consultation that does not exist", false, func(t *testing.T, r *raw) {
			r.send(t, fmt.Sprintf(`{"type":"join","version":1,"consultation":"c_nothere","token":%q,"name":"M"}`, victimToken))
		}, outcome{errcode.WrongConsultation, true}},
		{"tampered signature", false, func(t *testing.T, r *raw) {
			tampered := victimToken[:len(victimToken)-2] + flip(victimToken[len(victimToken)-2:])
			r.send(t, fmt.Sprintf(`{"type":"join","version":1,"consultation":%q,"token":%q,"name":"M"}`, victimID, tampered))
		}, outcome{errcode.BadToken, true}},
		{"patient link made a provider link", false, func(t *testing.T, r *raw) {
			forged := strings.Replace(victimToken, ".patient.", ".provider.", 1)
			r.send(t, fmt.Sprintf(`{"type":"join","version":1,"consultation":%q,"token":%q,"name":"M"}`, victimID, forged))
		}, outcome{errcode.BadToken, true}},
		{"garbage token", false, func(t *testing.T, r *raw) {
			r.send(t, fmt.Sprintf(`{"type":"join","version":1,"consultation":%q,"token":"nonsense","name":"M"}`, victimID))
		}, outcome{errcode.BadToken, true}},
		{"unsupported version", false, func(t *testing.T, r *raw) { r.send(t, joinMsg(victim.JoinURL, "M", 2)) }, outcome{errcode.UnsupportedVersion, true}},
		{"patient without a name", false, func(t *testing.T, r *raw) { r.send(t, joinMsg(victim.JoinURL, "  ", 1)) }, outcome{errcode.BadField, true}},
		{"join with a field of the wrong type", false, func(t *testing.T, r *raw) {
			r.send(t, `{"type":"join","version":1,"consultation":["c_x"],"token":"t","name":"M"}`)
		}, outcome{errcode.BadField, true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, ctx, e)
			if tc.joined {
				r.join(t, victim.JoinURL, "Eve")
			}
			tc.send(t, r)
			got := r.readType(t, protocol.TypeError)
			if got.Code != tc.want.code || got.Message == "" {
				t.Fatalf("error = %q (%q), want code %q with a message", got.Code, got.Message, tc.want.code)
			}
			if tc.want.closed {
				if status, ok := r.closed(t); !ok || status != websocket.StatusPolicyViolation {
					t.Fatalf("connection closed with %v (%v), want 1008", status, ok)
				}
			} else {
				r.send(t, `{"type":"ping"}`)
				if m := r.readType(t, protocol.TypePong); m.Type != protocol.TypePong {
					t.Fatal("connection did not carry on after the error")
				}
			}
		})
	}

	t.Run("expired link", func(t *testing.T) {
		short := e.newConsultation(t, 10*time.Minute)
		offset.Store(int64(11 * time.Minute))
		defer offset.Store(0)
		r := dialRaw(t, ctx, e)
		r.send(t, joinMsg(short.JoinURL, "Late", 1))
		if got := r.readType(t, protocol.TypeError); got.Code != errcode.LinkExpired {
			t.Fatalf("error = %q, want link_expired", got.Code)
		}
		if status, _ := r.closed(t); status != websocket.StatusPolicyViolation {
			t.Fatalf("closed with %v, want 1008", status)
		}
	})

	t.Run("frame over the hard limit", func(t *testing.T) {
		r := dialRaw(t, ctx, e)
		r.ws.Write(r.ctx, websocket.MessageText, []byte(strings.Repeat(" ", protocol.MaxFrameSize+10)))
		if status, ok := r.closed(t); !ok || status != websocket.StatusMessageTooBig {
			t.Fatalf("closed with %v (%v), want 1009", status, ok)
		}
	})

	t.Run("wrong origin", func(t *testing.T) {
		u := strings.Replace(e.srv.BaseURL(), "http://", "ws://", 1) + "/ws"
		_, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("dial with a foreign Origin: err=%v resp=%v, want 403", err, resp)
		}
		body, _ := io.ReadAll(resp.Body)
		var b struct{ Error struct{ Code string } }
		if json.Unmarshal(body, &b); b.Error.Code != "bad_origin" {
			t.Fatalf("body %q, want error code bad_origin", body)
		}
		// The server's own origin is fine.
		r := dialRawHeader(t, ctx, e, http.Header{"Origin": {e.srv.BaseURL()}})
		r.join(t, victim.JoinURL, "Same Origin")
	})

	t.Run("flood", func(t *testing.T) {
		r := dialRaw(t, ctx, e)
		r.join(t, victim.JoinURL, "Flood")
		go func() {
			for i := 0; i < 2000; i++ {
				if r.ws.Write(r.ctx, websocket.MessageText, []byte(`{"type":"ping"}`)) != nil {
					return
				}
			}
		}()
		limited := 0
		for {
			m, err := r.read(t)
			if err != nil {
				if status := websocket.CloseStatus(err); status != websocket.StatusPolicyViolation {
					t.Fatalf("flood ended with %v, want close 1008", err)
				}
				break
			}
			if m.Code == errcode.RateLimited {
				limited++
			}
		}
		// Told, but not once per dropped message: that would flood the client being throttled.
		if limited < 1 || limited > 5 {
			t.Fatalf("saw %d rate_limited errors before the close, want one a second", limited)
		}
	})

	lc.check(t, ctx)
	resp, err := http.Get(e.srv.BaseURL() + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz after bad input: %v %v", resp, err)
	}
}

// flip changes a base64url string into a different one of the same length.
func flip(s string) string {
	b := []byte(s)
	for i := range b {
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
	}
	return string(b)
}
