package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/telemed/telemed/client"
	"github.com/telemed/telemed/internal/config"
	"github.com/telemed/telemed/internal/server"
	"github.com/telemed/telemed/protocol"
)

// TestRestartKeepsAdmission: one node on SQLite is restarted in the middle of a call (SIGTERM, then
// started again on the same folder and port). Both sides reconnect and resume their places: the
// patient is not sent back to the waiting room, the provider sees nobody leave, and the data channel,
// peer to peer, carries on through the restart.
func TestRestartKeepsAdmission(t *testing.T) {
	var cfg config.Serve
	e := startServerEnv(t, func(c *config.Serve) { cfg = *c }, serverOptions())
	cfg.HTTPAddr = e.srv.Addr().String()
	ctx := ctxTimeout(t, 60*time.Second)
	c := e.newConsultation(t, time.Hour)

	echoes := make(chan string, 8)
	opened := make(chan *webrtc.DataChannel, 1)
	provider := mustJoin(t, ctx, client.Config{Link: c.StartURL,
		OnDataChannel: func(_ *client.Peer, dc *webrtc.DataChannel) {
			dc.OnMessage(func(m webrtc.DataChannelMessage) { dc.SendText("echo " + string(m.Data)) })
		}})
	patient := mustJoin(t, ctx, client.Config{Link: c.JoinURL, Name: "Ada",
		DataChannels: []client.DataChannelSpec{{Label: "check"}},
		OnDataChannel: func(_ *client.Peer, dc *webrtc.DataChannel) {
			dc.OnOpen(func() { opened <- dc })
			dc.OnMessage(func(m webrtc.DataChannelMessage) { echoes <- string(m.Data) })
		}})
	if _, err := provider.WaitWaiting(ctx); err != nil {
		t.Fatal(err)
	}
	provider.Admit(ctx, patient.ID())
	var dc *webrtc.DataChannel
	select {
	case dc = <-opened:
	case <-ctx.Done():
		t.Fatal("data channel did not open")
	}
	roundTrip := func(msg string) {
		t.Helper()
		dc.SendText(msg)
		select {
		case got := <-echoes:
			if got != "echo "+msg {
				t.Fatalf("echo %q", got)
			}
		case <-ctx.Done():
			t.Fatalf("no echo for %q", msg)
		}
	}
	roundTrip("before")
	ids := []string{provider.ID(), patient.ID()}

	if err := e.srv.Close(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	roundTrip("while the server is down") // media and data never passed through it
	o := serverOptions()
	o.Logger = testLogger(t)
	srv, err := server.Start(context.Background(), cfg, o)
	if err != nil {
		t.Fatalf("start again: %v", err)
	}
	t.Cleanup(func() { srv.Close() })

	for i, s := range []*client.Session{provider, patient} {
		waitEvent(t, ctx, s, client.EventReconnected)
		if s.ID() != ids[i] || s.Welcome().State != protocol.StateAdmitted || len(s.Welcome().Peers) != 1 {
			t.Fatalf("after the restart: id %s (was %s), welcome %+v; want the same admitted place", s.ID(), ids[i], s.Welcome())
		}
	}
	roundTrip("after the restart")
	// The new process counts them: both connected to it, in one consultation, each resumed by a join.
	for name, want := range map[string]float64{"telemed_signal_people": 2, "telemed_signal_consultations": 1,
		"telemed_signal_connections": 2, `telemed_signal_messages_total{type="join"}`: 2} {
		if got := metricValue(t, srv.Metrics(), name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	for drained := false; !drained; {
		select {
		case ev := <-provider.Events():
			if ev.Type == client.EventPeerLeft || ev.Type == client.EventRejoined {
				t.Fatalf("the provider saw the patient leave or wait across the restart: %+v", ev)
			}
		default:
			drained = true
		}
	}
	// Signaling works after it: a renegotiation's offer and answer go through the new process.
	if err := provider.SetMedia(ctx, false, true, false); err != nil {
		t.Fatal(err)
	}
	if ev := waitEvent(t, ctx, patient, client.EventMedia); ev.Peer.ID != ids[0] {
		t.Fatalf("media event %+v, want the provider's", ev)
	}
}

// metricValue is the value of a metric, named as Prometheus shows it (name{label="value"}).
func metricValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			shown := f.GetName()
			if len(m.GetLabel()) > 0 {
				var ls []string
				for _, l := range m.GetLabel() {
					ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
				}
				shown += "{" + strings.Join(ls, ",") + "}"
			}
			if shown == name {
				switch {
				case m.GetGauge() != nil:
					return m.GetGauge().GetValue()
				case m.GetCounter() != nil:
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestBrowserRestartKeepsAdmission: the same restart with two browsers. Both pages say they are
// reconnecting, resume with the same participant, never show the waiting room again, and keep
// decoding each other's video through it all.
func TestBrowserRestartKeepsAdmission(t *testing.T) {
	chromium := findChromium(t)
	var cfg config.Serve
	e := startServerEnv(t, func(c *config.Serve) { cfg = *c }, serverOptions())
	cfg.HTTPAddr = e.srv.Addr().String()
	c := e.newConsultation(t, time.Hour)
	provider := newBrowser(t, chromium)
	patient := newBrowser(t, chromium)
	startBrowserCall(t, provider, patient, c.StartURL, c.JoinURL)
	pages := map[string]context.Context{"provider": provider, "patient": patient}
	ids, before := map[string]string{}, map[string]callStats{}
	for who, page := range pages {
		before[who] = waitMedia(t, page, who)
		ids[who] = evalJS[string](t, page, `window.telemed.signaling.me.id`)
	}

	if err := e.srv.Close(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	for who, page := range pages {
		waitJS(t, page, who+" shows Reconnecting", `document.querySelector('#status').textContent.includes('Reconnecting')`, 10*time.Second)
	}
	o := serverOptions()
	o.Logger = testLogger(t)
	srv, err := server.Start(context.Background(), cfg, o)
	if err != nil {
		t.Fatalf("start again: %v", err)
	}
	t.Cleanup(func() { srv.Close() })

	for who, page := range pages {
		waitJS(t, page, who+" back to Connected", `document.querySelector('#status').textContent.includes('Connected')`, 30*time.Second)
		waitState(t, page, who, "in-call")
		if got := evalJS[string](t, page, `window.telemed.signaling.me.id`); got != ids[who] {
			t.Fatalf("%s resumed as %s, was %s: a restart must keep the place", who, got, ids[who])
		}
	}
	if n := evalJS[int](t, provider, `document.querySelectorAll('#lobby button[data-admit]').length`); n != 0 {
		t.Fatalf("the provider's waiting room shows %d people after the restart; the patient should still be in the call", n)
	}
	for who, page := range pages {
		deadline := time.Now().Add(10 * time.Second)
		for evalJS[callStats](t, page, statsJS).FramesDecoded <= before[who].FramesDecoded+10 {
			if time.Now().After(deadline) {
				t.Fatalf("%s stopped decoding video across the restart", who)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}
