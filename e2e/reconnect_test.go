package e2e

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/telemed/telemed/client"
	"github.com/telemed/telemed/internal/server"
	"github.com/telemed/telemed/internal/signal"
	"github.com/telemed/telemed/internal/signal/hub"
	"github.com/telemed/telemed/protocol"
)

// proxy is a TCP relay in front of the server, standing for the network between a participant and
// telemed: cutting its connections is a network blip.
type proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	conns   []net.Conn
	clients []net.Conn // the participant's side of each connection
	refuse  bool
	stopped bool
	frozen  bool // the server's side of a cut connection stays open and silent
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	p := listenProxy(t)
	p.start(target)
	return p
}

// listenProxy returns a proxy that listens but does not forward until start: a browser test needs
// its origin among the server's allowed origins before the server starts.
func listenProxy(t *testing.T) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln}
	t.Cleanup(func() { p.mu.Lock(); p.stopped = true; p.mu.Unlock(); ln.Close(); p.cut() })
	return p
}

// start forwards the proxy's connections to target.
func (p *proxy) start(target string) {
	p.target = target
	go p.serve()
}

// origin is the origin of a page loaded through the proxy, for config.Serve.AllowedOrigins: it is
// not the server's public URL, and the server does not trust the Host header.
func (p *proxy) origin() string { return "http://" + p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse := p.refuse || p.stopped
		p.mu.Unlock()
		if refuse {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.clients = append(p.clients, c)
		p.mu.Unlock()
		go func() {
			io.Copy(up, c)
			p.mu.Lock()
			frozen := p.frozen
			p.mu.Unlock()
			if !frozen {
				up.Close()
			}
		}()
		go func() { io.Copy(c, up); c.Close() }()
	}
}

// cut drops every connection through the proxy, as a network change does.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) setRefuse(v bool) { p.mu.Lock(); p.refuse = v; p.mu.Unlock() }

// cutHalfOpen drops the participant's side of every connection but leaves the server's side open and
// unread, as a network path that died silently: the server goes on writing into it for a while.
func (p *proxy) cutHalfOpen() {
	p.mu.Lock()
	p.frozen = true
	clients := p.clients
	p.clients = nil
	p.mu.Unlock()
	for _, c := range clients {
		c.Close()
	}
}

// via rewrites a link to go through the proxy.
func (p *proxy) via(link, base string) string {
	return strings.Replace(link, base, "http://"+p.ln.Addr().String(), 1)
}

func TestReconnectResumesPlace(t *testing.T) {
	e := startServer(t, server.Options{Signal: signal.Options{Options: hub.Options{ResumeGrace: 2 * time.Second}}})
	ctx := ctxTimeout(t, 40*time.Second)
	c := e.newConsultation(t, time.Hour)
	px := newProxy(t, e.srv.Addr().String())

	echoes := make(chan string, 8)
	opened := make(chan *webrtc.DataChannel, 1)
	provider := mustJoin(t, ctx, client.Config{Link: c.StartURL,
		OnDataChannel: func(_ *client.Peer, dc *webrtc.DataChannel) {
			dc.OnMessage(func(m webrtc.DataChannelMessage) { dc.SendText("echo " + string(m.Data)) })
		}})
	patient := mustJoin(t, ctx, client.Config{Link: px.via(c.JoinURL, e.srv.BaseURL()), Name: "Ada",
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
	id := patient.ID()

	// A blip: the patient's signaling connection drops, and comes back through the same network.
	px.cut()
	waitEvent(t, ctx, patient, client.EventReconnecting)
	waitEvent(t, ctx, patient, client.EventReconnected)
	if patient.ID() != id || patient.Welcome().State != protocol.StateAdmitted || len(patient.Welcome().Peers) != 1 {
		t.Fatalf("after resume: id %s (was %s), welcome %+v; want the same admitted place", patient.ID(), id, patient.Welcome())
	}
	roundTrip("after the blip")
	// The provider never saw the patient leave.
	for drained := false; !drained; {
		select {
		case ev := <-provider.Events():
			if ev.Type == client.EventPeerLeft {
				t.Fatalf("provider saw the patient leave during a blip: %+v", ev)
			}
		default:
			drained = true
		}
	}
	// Signaling works on the resumed connection: the provider can still reach the patient.
	if _, err := provider.WaitPeer(ctx); err != nil {
		t.Fatal(err)
	}

	// A longer outage: past the grace period, the provider is told the patient left.
	px.setRefuse(true)
	px.cut()
	left := waitEvent(t, ctx, provider, client.EventPeerLeft)
	if left.Peer.ID != id || left.Reason != protocol.ReasonDisconnected {
		t.Fatalf("peer_left = %+v, want the patient, disconnected", left)
	}
	// When the patient's network returns, its old place is gone: the client joins afresh and waits.
	px.setRefuse(false)
	waitEvent(t, ctx, patient, client.EventRejoined)
	if patient.ID() == id || patient.Welcome().State != protocol.StateWaiting {
		t.Fatalf("after the outage: id %s (was %s), state %s; want a new id in the waiting room", patient.ID(), id, patient.Welcome().State)
	}
}

// TestReloadLeavesAtOnce: a page reload closes the socket in order. The patient has left; the provider
// can admit them again straight away, rather than meet "room full" until a grace period ends.
func TestReloadLeavesAtOnce(t *testing.T) {
	e := startServer(t, serverOptions()) // the default 30 s grace
	ctx := ctxTimeout(t, 20*time.Second)
	c := e.newConsultation(t, time.Hour)
	provider := mustJoin(t, ctx, client.Config{Link: c.StartURL})

	first := dialRaw(t, ctx, e)
	w := first.join(t, c.JoinURL, "Ada")
	if err := provider.Admit(ctx, w.You.ID); err != nil {
		t.Fatal(err)
	}
	first.readType(t, protocol.TypeAdmitted)
	start := time.Now()
	first.ws.Close(1001, "page unloading") // what a browser sends on reload
	left := waitEvent(t, ctx, provider, client.EventPeerLeft)
	if left.Reason != protocol.ReasonLeft || time.Since(start) > 5*time.Second {
		t.Fatalf("peer_left %+v after %v, want reason left at once", left, time.Since(start))
	}

	second := dialRaw(t, ctx, e)
	w = second.join(t, c.JoinURL, "Ada")
	if err := provider.Admit(ctx, w.You.ID); err != nil {
		t.Fatal(err)
	}
	if m := second.readType(t, protocol.TypeAdmitted); m.Type != protocol.TypeAdmitted {
		t.Fatal("reloaded patient not admitted")
	}
}

// TestResumeReplaysWhatADeadConnectionSwallowed: the patient's network path dies silently, so the
// server goes on writing into a dead connection. A renegotiation the provider starts meanwhile (a new
// track, which needs an offer and an answer) must still reach the patient when it resumes: the server
// replays what came after the last message the patient received.
func TestResumeReplaysWhatADeadConnectionSwallowed(t *testing.T) {
	e := startServer(t, serverOptions())
	ctx := ctxTimeout(t, 30*time.Second)
	c := e.newConsultation(t, time.Hour)
	px := newProxy(t, e.srv.Addr().String())

	opened := make(chan struct{}, 1)
	tracks := make(chan string, 4)
	provider := mustJoin(t, ctx, client.Config{Link: c.StartURL})
	patient := mustJoin(t, ctx, client.Config{Link: px.via(c.JoinURL, e.srv.BaseURL()), Name: "Ada",
		DataChannels:  []client.DataChannelSpec{{Label: "first"}},
		OnDataChannel: func(_ *client.Peer, dc *webrtc.DataChannel) { dc.OnOpen(func() { opened <- struct{}{} }) },
		OnTrack:       func(_ *client.Peer, tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { tracks <- tr.StreamID() }})
	if _, err := provider.WaitWaiting(ctx); err != nil {
		t.Fatal(err)
	}
	provider.Admit(ctx, patient.ID())
	<-opened
	pp, err := provider.WaitPeer(ctx)
	if err != nil {
		t.Fatal(err)
	}

	px.cutHalfOpen()
	// While the patient is away, the provider adds a track: its offer goes into the dead connection,
	// which the server has not noticed is dead.
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "added-during-the-outage")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pp.PC.AddTrack(track); err != nil {
		t.Fatal(err)
	}
	sendCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		for sendCtx.Err() == nil {
			track.WriteSample(media.Sample{Data: []byte("late"), Duration: 20 * time.Millisecond})
			time.Sleep(20 * time.Millisecond)
		}
	}()
	waitEvent(t, ctx, patient, client.EventReconnected)
	select {
	case id := <-tracks:
		if id != "added-during-the-outage" {
			t.Fatalf("got track %q", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the renegotiation started during the outage never reached the patient")
	}
}

// TestRejoinWhenPlaceIsGone: the client was away past the grace period (as after a server restart),
// so its place is gone (bad_resume). The client joins afresh, as the protocol says, and the provider
// can admit it again.
func TestRejoinWhenPlaceIsGone(t *testing.T) {
	e := startServer(t, server.Options{Signal: signal.Options{Options: hub.Options{ResumeGrace: 300 * time.Millisecond}}})
	ctx := ctxTimeout(t, 30*time.Second)
	c := e.newConsultation(t, time.Hour)
	px := newProxy(t, e.srv.Addr().String())
	provider := mustJoin(t, ctx, client.Config{Link: c.StartURL})
	patient := mustJoin(t, ctx, client.Config{Link: px.via(c.JoinURL, e.srv.BaseURL()), Name: "Ada"})
	first := patient.ID()

	// The patient is away longer than the grace period: its place is given up.
	px.setRefuse(true)
	px.cut()
	waitEvent(t, ctx, patient, client.EventReconnecting)
	time.Sleep(time.Second)
	px.setRefuse(false)
	waitEvent(t, ctx, patient, client.EventRejoined)
	if patient.ID() == first || patient.Welcome().State != protocol.StateWaiting {
		t.Fatalf("after rejoining: id %s (was %s), state %s; want a new id, waiting", patient.ID(), first, patient.Welcome().State)
	}
	w, err := provider.WaitWaiting(ctx)
	if err != nil {
		t.Fatal(err)
	}
	provider.Admit(ctx, w[len(w)-1].ID)
	if err := patient.WaitAdmitted(ctx); err != nil {
		t.Fatalf("rejoined patient not admitted: %v", err)
	}
	if _, err := patient.WaitPeer(ctx); err != nil {
		t.Fatalf("rejoined patient did not connect: %v", err)
	}
}
