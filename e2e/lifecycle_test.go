package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/telemed/telemed/client"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/protocol"
	"github.com/telemed/telemed/internal/server"
	"github.com/telemed/telemed/internal/signal"
)

func TestDecline(t *testing.T) {
	e := startServer(t, serverOptions())
	ctx := ctxTimeout(t, 20*time.Second)
	c := e.newConsultation(t, time.Hour)
	provider, err := client.Join(ctx, client.Config{Link: c.StartURL, API: loopbackAPI()})
	if err != nil {
		t.Fatal(err)
	}
	defer provider.Close()
	patient, err := client.Join(ctx, client.Config{Link: c.JoinURL, Name: "Unexpected", API: loopbackAPI()})
	if err != nil {
		t.Fatal(err)
	}
	defer patient.Close()
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
		if m := r.readType(t, protocol.TypeError); m.Code != protocol.CodeNotJoined {
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
