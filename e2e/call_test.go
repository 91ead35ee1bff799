package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/telemed/telemed/client"
	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/protocol"
)

// side is one Go participant with a generated audio track and a record of what it received.
type side struct {
	name  string
	track *webrtc.TrackLocalStaticSample

	mu       sync.Mutex
	packets  int
	payloads []string
	messages []string
	gotMsg   chan string
}

func newSide(t *testing.T, name string) *side {
	t.Helper()
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "telemed-"+name)
	if err != nil {
		t.Fatal(err)
	}
	return &side{name: name, track: track, gotMsg: make(chan string, 16)}
}

// sendSamples writes numbered samples until ctx ends. Opus passes payloads through unchanged, so the
// receiver can check it got exactly what this side sent.
func (s *side) sendSamples(ctx context.Context) {
	for i := 0; ctx.Err() == nil; i++ {
		s.track.WriteSample(media.Sample{Data: []byte(fmt.Sprintf("from-%s-%d", s.name, i)), Duration: 20 * time.Millisecond})
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *side) config(link string) client.Config {
	return client.Config{
		Link: link, Name: "Ada Lovelace", API: loopbackAPI(),
		Tracks: []webrtc.TrackLocal{s.track},
		OnTrack: func(p *client.Peer, tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			for {
				pkt, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				s.mu.Lock()
				s.packets++
				if len(s.payloads) < 5 {
					s.payloads = append(s.payloads, string(pkt.Payload))
				}
				s.mu.Unlock()
			}
		},
		OnDataChannel: func(p *client.Peer, dc *webrtc.DataChannel) {
			dc.OnOpen(func() { dc.SendText("hello from " + s.name) })
			dc.OnMessage(func(m webrtc.DataChannelMessage) { s.gotMsg <- string(m.Data) })
		},
	}
}

func (s *side) received() (int, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.packets, append([]string(nil), s.payloads...)
}

func waitEvent(t *testing.T, ctx context.Context, s *client.Session, typ client.EventType) client.Event {
	t.Helper()
	for {
		select {
		case e := <-s.Events():
			if e.Type == typ {
				return e
			}
		case <-ctx.Done():
			t.Fatalf("waiting for event %d: %v", typ, ctx.Err())
		}
	}
}

// TestConsultationGoClients runs a whole 1:1 consultation between two Go clients through a real server:
// the patient waits, is admitted, media and data flow both ways, an outsider is refused, and hang-up
// reaches the other side.
func TestConsultationGoClients(t *testing.T) {
	e := startServer(t, serverOptions())
	c := e.newConsultation(t, time.Hour)
	ctx := ctxTimeout(t, 30*time.Second)

	prov, pat := newSide(t, "provider"), newSide(t, "patient")
	pcfg := prov.config(c.StartURL)
	provider, err := client.Join(ctx, pcfg)
	if err != nil {
		t.Fatalf("provider join: %v", err)
	}
	defer provider.Close()
	if w := provider.Welcome(); w.State != protocol.StateAdmitted || w.You.Role != "provider" || w.You.Name != "Dr Grace Hopper" {
		t.Fatalf("provider welcome = %+v, want admitted provider named from the account", w)
	}

	qcfg := pat.config(c.JoinURL)
	qcfg.DataChannels = []client.DataChannelSpec{{Label: "chat"}}
	patient, err := client.Join(ctx, qcfg)
	if err != nil {
		t.Fatalf("patient join: %v", err)
	}
	defer patient.Close()
	if w := patient.Welcome(); w.State != protocol.StateWaiting || len(w.Peers) != 0 || w.Consultation.ProviderName != "Dr Grace Hopper" {
		t.Fatalf("patient welcome = %+v, want waiting with no peers", w)
	}

	waiting, err := provider.WaitWaiting(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(waiting) != 1 || waiting[0].ID != patient.ID() || waiting[0].Name != "Ada Lovelace" {
		t.Fatalf("lobby = %+v, want the patient", waiting)
	}

	// Before admission the patient cannot signal the provider.
	if err := expectNoPeers(patient); err != nil {
		t.Fatal(err)
	}

	if err := provider.Admit(ctx, patient.ID()); err != nil {
		t.Fatal(err)
	}
	if err := patient.WaitAdmitted(ctx); err != nil {
		t.Fatalf("patient not admitted: %v", err)
	}
	sendCtx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	go prov.sendSamples(sendCtx)
	go pat.sendSamples(sendCtx)

	pp, err := patient.WaitPeer(ctx)
	if err != nil {
		t.Fatalf("patient's peer connection: %v", err)
	}
	if pp.ID != provider.ID() || pp.Polite() {
		t.Fatalf("patient's peer = %s polite=%v, want the provider with the patient impolite", pp.ID, pp.Polite())
	}
	if _, err := provider.WaitPeer(ctx); err != nil {
		t.Fatalf("provider's peer connection: %v", err)
	}

	for _, want := range []struct {
		s    *side
		from string
	}{{prov, "patient"}, {pat, "provider"}} {
		select {
		case m := <-want.s.gotMsg:
			if m != "hello from "+want.from {
				t.Fatalf("%s got data channel message %q", want.s.name, m)
			}
		case <-ctx.Done():
			t.Fatalf("%s got no data channel message", want.s.name)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		np, pp := prov.received()
		nq, qp := pat.received()
		if np >= 20 && nq >= 20 {
			if !strings.HasPrefix(pp[0], "from-patient-") || !strings.HasPrefix(qp[0], "from-provider-") {
				t.Fatalf("payloads provider got %q, patient got %q", pp, qp)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("media did not flow both ways: provider got %d packets, patient got %d", np, nq)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// An outsider with the patient link of another consultation is refused at the door.
	other := e.newConsultation(t, time.Hour)
	_, _, otherToken, _ := client.ParseLink(other.JoinURL)
	forged := strings.Replace(c.JoinURL, c.JoinURL[strings.Index(c.JoinURL, "#t=")+3:], otherToken, 1)
	_, err = client.Join(ctx, client.Config{Link: forged, Name: "Mallory", API: loopbackAPI()})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != errcode.WrongConsultation {
		t.Fatalf("join with another consultation's link: err = %v, want wrong_consultation", err)
	}
	// Inside their own consultation, they cannot reach this one's participants.
	mallory := dialRaw(t, ctx, e)
	mallory.join(t, other.StartURL, "")
	mallory.send(t, fmt.Sprintf(`{"type":"offer","to":%q,"sdp":"v=0\r\n"}`, patient.ID()))
	if got := mallory.readType(t, protocol.TypeError); got.Code != errcode.UnknownPeer {
		t.Fatalf("offer across consultations: %+v, want unknown_peer", got)
	}

	// Hang up: the provider sees the patient leave.
	if err := patient.Leave(ctx); err != nil {
		t.Fatalf("leave: %v", err)
	}
	left := waitEvent(t, ctx, provider, client.EventPeerLeft)
	if left.Peer.ID != patient.ID() || left.Reason != protocol.ReasonLeft {
		t.Fatalf("peer_left = %+v, want the patient, reason left", left)
	}

	waitAudit(t, e, c.ID, consult.AuditCreated, consult.AuditJoined, consult.AuditJoined, consult.AuditAdmitted, consult.AuditLeft)
}

// waitAudit waits for a consultation's audit trail to be exactly the actions given: lines are written
// just after the participants are told, so a test may look a moment too early.
func waitAudit(t *testing.T, e *env, consultationID string, want ...string) {
	t.Helper()
	var actions []string
	for deadline := time.Now().Add(5 * time.Second); ; {
		audit, err := e.svc.Consultations.AuditTrail(context.Background(), consultationID)
		if err != nil {
			t.Fatal(err)
		}
		actions = actions[:0]
		for _, a := range audit {
			actions = append(actions, a.Action)
		}
		if strings.Join(actions, ",") == strings.Join(want, ",") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit trail = %v, want %v", actions, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func expectNoPeers(s *client.Session) error {
	if n := len(s.Peers()); n != 0 {
		return fmt.Errorf("waiting patient has %d peers, want 0", n)
	}
	return nil
}
