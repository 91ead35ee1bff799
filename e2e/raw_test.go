package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/telemed/telemed/client"
	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/server"
	"github.com/telemed/telemed/protocol"
)

// serverOptions are the options of most tests: production defaults.
func serverOptions() server.Options { return server.Options{} }

// raw is a signaling connection driven message by message, for testing what the server does with input
// no well-behaved client sends.
type raw struct {
	ctx     context.Context
	ws      *websocket.Conn
	welcome rawMessage // the last welcome join read
}

// you is who the last welcome said this connection is.
func (r *raw) you(t testing.TB) protocol.You {
	t.Helper()
	if r.welcome.Type == "" {
		t.Fatal("you: not joined")
	}
	return r.welcome.You
}

type rawMessage struct {
	Type    string          `json:"type"`
	Code    errcode.Code    `json:"code"`
	Message string          `json:"message"`
	RefID   *int64          `json:"ref_id"`
	State   string          `json:"state"`
	You     protocol.You    `json:"you"`
	Peer    json.RawMessage `json:"peer"`
	Waiting []protocol.Waiting
	Raw     []byte `json:"-"`
}

func dialRaw(t testing.TB, ctx context.Context, e *env) *raw {
	t.Helper()
	return dialRawHeader(t, ctx, e, nil)
}

func dialRawHeader(t testing.TB, ctx context.Context, e *env, h http.Header) *raw {
	t.Helper()
	u := strings.Replace(e.srv.BaseURL(), "http://", "ws://", 1) + "/ws"
	ws, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	ws.SetReadLimit(protocol.MaxFrameSize)
	t.Cleanup(func() { ws.CloseNow() })
	return &raw{ctx: ctx, ws: ws}
}

func (r *raw) send(t testing.TB, msg string) {
	t.Helper()
	if err := r.ws.Write(r.ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("send %.60q: %v", msg, err)
	}
}

func (r *raw) read(t testing.TB) (rawMessage, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	defer cancel()
	_, data, err := r.ws.Read(ctx)
	if err != nil {
		return rawMessage{}, err
	}
	var m rawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("server sent bad JSON %q: %v", data, err)
	}
	m.Raw = data
	return m, nil
}

// readType reads until a message of type typ, skipping others (lobby updates and the like).
func (r *raw) readType(t testing.TB, typ string) rawMessage {
	t.Helper()
	for {
		m, err := r.read(t)
		if err != nil {
			t.Fatalf("waiting for %q: %v", typ, err)
		}
		if m.Type == typ {
			return m
		}
	}
}

// join sends join with the link and returns the welcome.
func (r *raw) join(t testing.TB, link, name string) rawMessage {
	t.Helper()
	_, id, token, err := client.ParseLink(link)
	if err != nil {
		t.Fatal(err)
	}
	if name == "" {
		name = "Test"
	}
	r.send(t, fmt.Sprintf(`{"type":"join","version":1,"consultation":%q,"token":%q,"name":%q}`, id, token, name))
	m, err := r.read(t)
	if err != nil || m.Type != protocol.TypeWelcome {
		t.Fatalf("join: got %+v, %v; want welcome", m, err)
	}
	r.welcome = m
	return m
}

// closed reports whether the server closed the connection, and with which status.
func (r *raw) closed(t testing.TB) (websocket.StatusCode, bool) {
	t.Helper()
	for {
		_, err := r.read(t)
		if err != nil {
			s := websocket.CloseStatus(err)
			return s, s != -1
		}
	}
}
