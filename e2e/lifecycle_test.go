package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/telemed/telemed/client"
	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/server"
	"github.com/telemed/telemed/internal/signal"
	"github.com/telemed/telemed/protocol"
)

func TestDecline(t *testing.T) {
	e := startServer(t, serverOptions())
	ctx := ctxTimeout(t, 20*time.Second)
	c := e.newConsultation(t, time.Hour)
	provider := mustJoin(t, ctx, client.Config{Link: c.StartURL})
	patient := mustJoin(t, ctx, client.Config{Link: c.JoinURL, Name: "Unexpected"})
	if _, err := provider.WaitWaiting(ctx); err != nil {
		t.Fatal(err)
	}
	if err := provider.Decline(ctx, patient.ID()); err != nil {
		t.Fatal(err)
	}
	if err := patient.WaitAdmitted(ctx); !errors.Is(err, client.ErrDeclined) {
		t.Fatalf("declined patient: %v, want ErrDeclined", err)
	}
	// The waiting room empties for the provider.
	for deadline := time.Now().Add(5 * time.Second); len(provider.Waiting()) != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("waiting room still %v after decline", provider.Waiting())
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitAudit(t, e, c.ID, consult.AuditCreated, consult.AuditJoined, consult.AuditJoined, consult.AuditDeclined)
}

func TestKeepAlive(t *testing.T) {
	e := startServer(t, server.Options{Signal: signal.Options{
		JoinTimeout: 500 * time.Millisecond, PingInterval: 200 * time.Millisecond, IdleTimeout: 700 * time.Millisecond}})
	ctx := ctxTimeout(t, 20*time.Second)
	c := e.newConsultation(t, time.Hour)

	t.Run("a connection that never joins is closed", func(t *testing.T) {
		r := dialRaw(t, ctx, e)
		if m := r.readType(t, protocol.TypeError); m.Code != errcode.NotJoined {
			t.Fatalf("got %+v, want not_joined", m)
		}
		if status, _ := r.closed(t); status != websocket.StatusPolicyViolation {
			t.Fatalf("closed with %v, want 1008", status)
		}
	})

	t.Run("a quiet client that answers pings stays", func(t *testing.T) {
		r := dialRaw(t, ctx, e)
		r.join(t, c.JoinURL, "Quiet")
		// Read (which answers the server's pings) for several idle timeouts without sending anything.
		rctx, cancel := context.WithTimeout(ctx, 2500*time.Millisecond)
		defer cancel()
		_, _, err := r.ws.Read(rctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("quiet client was dropped: %v", err)
		}
	})
}

// TestBurstDoesNotDisconnectReceiver: a peer may burst up to the rate limit at the other. The receiver,
// even one not reading for a moment, must not be disconnected as "too slow" because of it, and gets
// every message.
func TestBurstDoesNotDisconnectReceiver(t *testing.T) {
	e := startServer(t, serverOptions())
	ctx := ctxTimeout(t, 20*time.Second)
	c := e.newConsultation(t, time.Hour)
	prov := dialRaw(t, ctx, e)
	pw := prov.join(t, c.StartURL, "")
	pat := dialRaw(t, ctx, e)
	qw := pat.join(t, c.JoinURL, "Ada")
	prov.send(t, `{"type":"admit","peer":"`+qw.You.ID+`"}`)
	pat.readType(t, protocol.TypeAdmitted)
	prov.readType(t, protocol.TypePeerJoined)
	prov.readType(t, protocol.TypeLobby) // the waiting room, now empty

	const burst = 200 - 1 // the documented burst allowance, less the join
	for i := range burst {
		pat.send(t, fmt.Sprintf(`{"type":"candidate","to":%q,"candidate":{"candidate":"candidate:%d 1 udp 1 192.0.2.1 %d typ host","sdp_mid":"0"}}`, pw.You.ID, i, 1000+i))
	}
	time.Sleep(300 * time.Millisecond) // the provider reads nothing meanwhile
	for i := range burst {
		m, err := prov.read(t)
		if err != nil || m.Type != protocol.TypeCandidate {
			t.Fatalf("candidate %d: got %s, %v", i, m.Raw, err)
		}
		if !strings.Contains(string(m.Raw), fmt.Sprintf("candidate:%d ", i)) {
			t.Fatalf("candidate %d arrived as %s: out of order or lost", i, m.Raw)
		}
	}
	prov.send(t, `{"type":"ping"}`)
	prov.readType(t, protocol.TypePong)
}

// TestWaitingRoomBound: whoever holds a patient link cannot pile up arrivals without end: past the
// bound, a join is refused with waiting_room_full and the provider's view stays small.
func TestWaitingRoomBound(t *testing.T) {
	e := startServer(t, serverOptions())
	ctx := ctxTimeout(t, 30*time.Second)
	c := e.newConsultation(t, time.Hour)
	for i := range consult.MaxWaiting {
		dialRaw(t, ctx, e).join(t, c.JoinURL, fmt.Sprint("Patient ", i))
	}
	r := dialRaw(t, ctx, e)
	r.send(t, joinMsg(c.JoinURL, "One too many", 1))
	if m := r.readType(t, protocol.TypeError); m.Code != errcode.WaitingRoomFull {
		t.Fatalf("got %+v, want waiting_room_full", m)
	}
	// The provider still gets in, and sees the bounded room.
	prov := dialRaw(t, ctx, e)
	w := prov.join(t, c.StartURL, "")
	if len(w.Waiting) != consult.MaxWaiting {
		t.Fatalf("provider sees %d waiting, want %d", len(w.Waiting), consult.MaxWaiting)
	}
}
