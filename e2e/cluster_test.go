package e2e

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/telemed/telemed/client"
	"github.com/telemed/telemed/protocol"
)

// echoCheck keeps a data channel busy through everything the servers go through: a message every
// 50 ms, each echoed by the other side, so that a stall or a closed channel shows.
type echoCheck struct {
	mu      sync.Mutex
	dc      *webrtc.DataChannel
	last    time.Time // the last echo
	maxGap  time.Duration
	closed  bool
	echoes  int
	opened  chan struct{}
	stopped chan struct{}
}

func newEchoCheck() *echoCheck {
	return &echoCheck{opened: make(chan struct{}), stopped: make(chan struct{})}
}

// config adds the check's channel to a client's configuration (the side that opens it).
func (e *echoCheck) config(cfg client.Config) client.Config {
	cfg.DataChannels = append(cfg.DataChannels, client.DataChannelSpec{Label: "check"})
	prev := cfg.OnDataChannel
	cfg.OnDataChannel = func(p *client.Peer, dc *webrtc.DataChannel) {
		if dc.Label() != "check" {
			if prev != nil {
				prev(p, dc)
			}
			return
		}
		dc.OnOpen(func() {
			e.mu.Lock()
			e.dc, e.last = dc, time.Now()
			e.mu.Unlock()
			close(e.opened)
		})
		dc.OnClose(func() {
			e.mu.Lock()
			e.closed = true
			e.mu.Unlock()
		})
		dc.OnMessage(func(webrtc.DataChannelMessage) {
			e.mu.Lock()
			defer e.mu.Unlock()
			now := time.Now()
			e.maxGap = max(e.maxGap, now.Sub(e.last))
			e.last = now
			e.echoes++
		})
	}
	return cfg
}

// echoer answers the check on the other side.
func echoer(cfg client.Config) client.Config {
	prev := cfg.OnDataChannel
	cfg.OnDataChannel = func(p *client.Peer, dc *webrtc.DataChannel) {
		if dc.Label() != "check" {
			if prev != nil {
				prev(p, dc)
			}
			return
		}
		dc.OnMessage(func(m webrtc.DataChannelMessage) { dc.Send(m.Data) })
	}
	return cfg
}

func (e *echoCheck) run(t *testing.T, ctx context.Context) {
	select {
	case <-e.opened:
	case <-ctx.Done():
		t.Fatal("the check channel never opened")
	}
	go func() {
		defer close(e.stopped)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				e.mu.Lock()
				dc := e.dc
				e.mu.Unlock()
				dc.SendText("ping")
			}
		}
	}()
}

// verify fails the test unless the channel stayed open and never went quiet for long.
func (e *echoCheck) verify(t *testing.T, what string) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	gap := max(e.maxGap, time.Since(e.last))
	t.Logf("%s: %d echoes, longest silence %v", what, e.echoes, gap.Round(time.Millisecond))
	if e.closed || gap > 2*time.Second {
		t.Fatalf("%s: the data channel stopped (closed %v, silent for %v): media and data must not depend on the servers", what, e.closed, gap)
	}
}

// noDeparture fails the test if s saw anyone leave, or had to join afresh.
func noDeparture(t *testing.T, who string, s *client.Session) {
	t.Helper()
	for {
		select {
		case ev := <-s.Events():
			if ev.Type == client.EventPeerLeft || ev.Type == client.EventRejoined || ev.Type == client.EventClosed {
				t.Fatalf("%s saw %v (%+v): the call should have gone on", who, ev.Type, ev)
			}
		default:
			return
		}
	}
}

// waitResumed waits until s has reconnected and checks it kept its admitted place.
func waitResumed(t *testing.T, ctx context.Context, who string, s *client.Session, id string) {
	t.Helper()
	for {
		select {
		case ev := <-s.Events():
			switch ev.Type {
			case client.EventReconnected:
				if s.ID() != id || s.Welcome().State != protocol.StateAdmitted || len(s.Welcome().Peers) != 1 {
					t.Fatalf("%s after reconnecting: id %s (was %s), welcome %+v; want the same admitted place", who, s.ID(), id, s.Welcome())
				}
				return
			case client.EventPeerLeft, client.EventRejoined, client.EventClosed:
				t.Fatalf("%s saw %v (%+v) instead of resuming", who, ev.Type, ev)
			}
		case <-ctx.Done():
			t.Fatalf("%s did not reconnect", who)
		}
	}
}

// chatBothWays sends a chat message each way and waits for both.
func chatBothWays(t *testing.T, ctx context.Context, provPeer, patPeer *client.Peer, prov, pat *dataSide, text string) {
	t.Helper()
	for _, p := range []*client.Peer{provPeer, patPeer} {
		if _, err := p.SendChat(text); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []*dataSide{prov, pat} {
		if m := recvChat(t, ctx, d); m.Text != text {
			t.Fatalf("%s got chat %q, want %q", d.name, m.Text, text)
		}
	}
}

// sendFileTo sends random bytes from one peer and checks what the other side's dataSide received.
func sendFileTo(t *testing.T, ctx context.Context, from *client.Peer, to *dataSide, size int) {
	t.Helper()
	data, sum := randomFile(t, size)
	tr, err := from.SendFile(ctx, client.FileInfo{Name: "scan.bin", MIME: "application/octet-stream", Size: int64(size)}, strings.NewReader(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	in := recvFile(t, ctx, to)
	if err := tr.Wait(ctx); err != nil {
		t.Fatalf("send file: %v", err)
	}
	if err := in.Wait(ctx); err != nil {
		t.Fatalf("receive file: %v", err)
	}
	if got := to.sink(in.Info().ID).sum(); got != sum {
		t.Fatalf("file arrived with sha256 %s, want %s", got, sum)
	}
}

// TestClusterCallSurvivesEveryNode: three nodes on PostgreSQL and Redis behind HAProxy. A provider
// and a patient, connected through HAProxy to different nodes, hold a call with chat and a file.
// The provider's node is killed (SIGKILL): the provider reconnects through HAProxy to another node
// and resumes without being admitted again, and the data channel never stops. Then each of the
// three nodes is stopped (SIGTERM) and started again in turn, as a rolling upgrade does, and the
// call goes on through all of it.
func TestClusterCallSurvivesEveryNode(t *testing.T) {
	c := startCluster(t, 3)
	ctx := ctxTimeout(t, 3*time.Minute)
	startURL, joinURL, cid := c.consultation()

	prov, pat := newDataSide("Dr Grace Hopper"), newDataSide("Ada")
	check := newEchoCheck()
	provider := mustJoin(t, ctx, echoer(prov.config(startURL)))
	patient := mustJoin(t, ctx, check.config(pat.config(joinURL)))
	if _, err := provider.WaitWaiting(ctx); err != nil {
		t.Fatal(err)
	}
	if err := provider.Admit(ctx, patient.ID()); err != nil {
		t.Fatal(err)
	}
	patPeer, err := patient.WaitPeer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	provPeer, err := provider.WaitPeer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*client.Peer{provPeer, patPeer} {
		if err := p.WaitChat(ctx); err != nil {
			t.Fatal(err)
		}
	}
	chatBothWays(t, ctx, provPeer, patPeer, prov, pat, "hello across nodes")
	sendFileTo(t, ctx, patPeer, prov, 256<<10)
	check.run(t, ctx)

	ids := map[string]string{"provider": provider.ID(), "patient": patient.ID()}
	sessions := map[string]*client.Session{"provider": provider, "patient": patient}
	provNode, patNode := c.holder(cid, ids["provider"]), c.holder(cid, ids["patient"])
	if provNode == patNode {
		t.Fatalf("provider and patient both landed on %s; HAProxy's leastconn should have spread them", provNode.name)
	}
	t.Logf("provider on %s, patient on %s", provNode.name, patNode.name)

	// A crash of the provider's node.
	c.kill(provNode)
	waitResumed(t, ctx, "provider", provider, ids["provider"])
	if now := c.holder(cid, ids["provider"]); now == provNode {
		t.Fatalf("the provider resumed on the node that was killed")
	}
	noDeparture(t, "patient", patient)
	chatBothWays(t, ctx, provPeer, patPeer, prov, pat, "after the crash")
	check.verify(t, "after a SIGKILL")
	c.start(provNode)

	// A rolling upgrade: each node stopped and started again in turn.
	for _, nd := range c.nodes {
		var moved []string
		for who := range sessions {
			if c.holder(cid, ids[who]) == nd {
				moved = append(moved, who)
			}
		}
		took := c.stop(nd)
		t.Logf("%s stopped in %v, holding %v", nd.name, took.Round(time.Millisecond), moved)
		if took > 10*time.Second {
			t.Errorf("%s took %v to stop; a stopping node should exit within a bounded time", nd.name, took)
		}
		for _, who := range moved {
			waitResumed(t, ctx, who, sessions[who], ids[who])
		}
		c.start(nd)
	}
	noDeparture(t, "provider", provider)
	noDeparture(t, "patient", patient)
	chatBothWays(t, ctx, provPeer, patPeer, prov, pat, "after the upgrade")
	sendFileTo(t, ctx, provPeer, pat, 128<<10)
	check.verify(t, "after a rolling restart of every node")
}
