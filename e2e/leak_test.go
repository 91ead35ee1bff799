package e2e

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/telemed/telemed/client"
)

// TestNoGoroutineLeak: a whole consultation, then everything closed, leaves no goroutine behind, in
// the server or the client. (Goroutines of earlier tests still winding down can only make "before"
// larger, never cause a false failure.)
func TestNoGoroutineLeak(t *testing.T) {
	settle := func(limit int) int {
		n := runtime.NumGoroutine()
		for deadline := time.Now().Add(10 * time.Second); n > limit && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
			n = runtime.NumGoroutine()
		}
		return n
	}
	before := runtime.NumGoroutine()

	func() {
		e := startServerWith(t, serverOptions())
		defer e.Close()
		p, err := e.Services().Accounts.AddProvider(context.Background(), "leak@clinic.example", "Dr Leak", testPassword)
		if err != nil {
			t.Fatal(err)
		}
		env := &env{srv: e, svc: e.Services(), provider: p}
		ctx := ctxTimeout(t, 30*time.Second)
		c := env.newConsultation(t, time.Hour)
		opened := make(chan struct{}, 1)
		provider, err := client.Join(ctx, client.Config{Link: c.StartURL, API: loopbackAPI()})
		if err != nil {
			t.Fatal(err)
		}
		patient, err := client.Join(ctx, client.Config{Link: c.JoinURL, Name: "Ada", API: loopbackAPI(),
			DataChannels: []client.DataChannelSpec{{Label: "x"}},
			OnDataChannel: func(_ *client.Peer, dc *webrtc.DataChannel) {
				dc.OnOpen(func() { opened <- struct{}{} })
			}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := provider.WaitWaiting(ctx); err != nil {
			t.Fatal(err)
		}
		provider.Admit(ctx, patient.ID())
		select {
		case <-opened:
		case <-ctx.Done():
			t.Fatal("call did not connect")
		}
		patient.Leave(ctx)
		provider.Leave(ctx)
	}()

	if after := settle(before); after > before {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		t.Fatalf("%d goroutines before, %d after everything closed:\n%s", before, after, buf[:n])
	}
}
