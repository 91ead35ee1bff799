package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/telemed/telemed/client"
	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/consultations"
	"github.com/telemed/telemed/internal/monitoring"
	"github.com/telemed/telemed/protocol"
	"github.com/telemed/telemed/vitals"
)

// groupLabel is the test's own data channel, opened towards every peer by the side that offers.
const groupLabel = "group-test"

// member is one Go participant of a group visit and a record of what reached it, by sender id.
type member struct {
	tag  string // in track ids, which SDP cannot carry with spaces
	name string
	cam  *webrtc.TrackLocalStaticSample // nil for the device
	s    *client.Session

	mu       sync.Mutex
	packets  map[string]int    // "<peer id> <track id>" → RTP packets
	hellos   map[string]string // peer id → the text on the test's channel
	chats    map[string][]client.ChatMessage
	receipts map[string][]string
	files    map[string][]*client.Transfer
	sums     map[*client.Transfer]hash.Hash
	readings map[string]int
}

func newMember(t *testing.T, tag, name string, camera bool) *member {
	t.Helper()
	g := &member{tag: tag, name: name, packets: map[string]int{}, hellos: map[string]string{}, chats: map[string][]client.ChatMessage{},
		receipts: map[string][]string{}, files: map[string][]*client.Transfer{}, sums: map[*client.Transfer]hash.Hash{}, readings: map[string]int{}}
	if camera {
		g.cam = videoTrack(t, "camera-"+tag, "telemed-"+tag)
	}
	return g
}

func videoTrack(t *testing.T, id, stream string) *webrtc.TrackLocalStaticSample {
	t.Helper()
	tr, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, id, stream)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// writeVideo writes 20 ms samples into track until ctx ends; nothing decodes them, they are counted.
func writeVideo(ctx context.Context, track *webrtc.TrackLocalStaticSample) {
	frame := bytes.Repeat([]byte{0x9d}, 300)
	for ctx.Err() == nil {
		track.WriteSample(media.Sample{Data: frame, Duration: 20 * time.Millisecond})
		time.Sleep(20 * time.Millisecond)
	}
}

func (g *member) config(link string) client.Config {
	cfg := client.Config{
		Link: link, Name: g.name, API: loopbackAPI(),
		DataChannels: []client.DataChannelSpec{{Label: groupLabel}},
		OnTrack: func(p *client.Peer, tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
				g.mu.Lock()
				g.packets[p.ID+" "+tr.ID()]++
				g.mu.Unlock()
			}
		},
		OnDataChannel: func(p *client.Peer, dc *webrtc.DataChannel) {
			if dc.Label() != groupLabel {
				return
			}
			dc.OnOpen(func() { dc.SendText("hello from " + g.name) })
			dc.OnMessage(func(m webrtc.DataChannelMessage) { g.mu.Lock(); g.hellos[p.ID] = string(m.Data); g.mu.Unlock() })
		},
		OnChat: func(p *client.Peer, m client.ChatMessage) {
			g.mu.Lock()
			g.chats[p.ID] = append(g.chats[p.ID], m)
			g.mu.Unlock()
		},
		OnChatDelivered: func(p *client.Peer, id string) {
			g.mu.Lock()
			g.receipts[p.ID] = append(g.receipts[p.ID], id)
			g.mu.Unlock()
		},
		OnFile: func(p *client.Peer, tr *client.Transfer) io.Writer {
			h := sha256.New()
			g.mu.Lock()
			g.files[p.ID] = append(g.files[p.ID], tr)
			g.sums[tr] = h
			g.mu.Unlock()
			return h
		},
		OnReading: func(p *client.Peer, _ vitals.Reading) { g.mu.Lock(); g.readings[p.ID]++; g.mu.Unlock() },
	}
	if g.cam != nil {
		cfg.Tracks = []webrtc.TrackLocal{g.cam}
	}
	return cfg
}

// got reads the record under the lock.
func (g *member) got(f func(*member) bool) bool { g.mu.Lock(); defer g.mu.Unlock(); return f(g) }

// connectedTo reports whether g's peer connection to id is connected.
func (g *member) connectedTo(id string) bool {
	p := g.s.Peer(id)
	return p != nil && p.PC.ConnectionState() == webrtc.PeerConnectionStateConnected
}

// sees reports whether o is g's peer with a media state that ok accepts.
func (g *member) sees(o *member, ok func(protocol.MediaState) bool) bool {
	p := g.s.Peer(o.s.ID())
	return p != nil && ok(p.Media())
}

// waitSessionEvent reads s's events until one that match accepts, and returns it.
func waitSessionEvent(t *testing.T, ctx context.Context, s *client.Session, what string, match func(client.Event) bool) client.Event {
	t.Helper()
	for {
		select {
		case e := <-s.Events():
			if match(e) {
				return e
			}
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		}
	}
}

// TestGroupVisitGoClients runs a group visit of four Go clients (provider, patient, an invited guest
// and an invited clinician) and the patient's monitoring device through a real server: every person
// receives every other person's video, every pair (the device included) exchanges a data channel
// message, the device's readings reach every person, a chat reaches all three others, a file reaches
// the one person it was sent to, a camera turned off is seen as off, a screen shared by the provider
// reaches everyone (a patient's only once allowed, and stops when taken back), and a guest the
// provider removes is let go with ErrRemoved and cannot come back.
func TestGroupVisitGoClients(t *testing.T) {
	m := startMonitoring(t)
	ctx := ctxTimeout(t, 45*time.Second)
	c, err := m.svc.Consultations.CreateConsultation(ctx, m.env.provider, "test", consultations.NewConsultation{Title: "Family meeting", PatientID: m.patient.ID})
	if err != nil {
		t.Fatal(err)
	}
	guestInv := invite(t, m.api, m.provider, c.ID, "guest", "Marta (interpreter)")
	docInv := invite(t, m.api, m.provider, c.ID, "clinician", "Dr Lin (GP)")

	prov, pat := newMember(t, "provider", "Dr Grace Hopper", true), newMember(t, "patient", "Ada", true)
	guest, doc := newMember(t, "guest", "Marta (interpreter)", true), newMember(t, "clinician", "Dr Lin (GP)", true)
	dev := newMember(t, "device", "Oximeter", false)
	people := []*member{prov, pat, guest, doc}
	prov.s = mustJoin(t, ctx, prov.config(c.StartURL))

	// The device is handed the consultation's link now that a person is in it, and joins at once.
	var link struct {
		Consultation *monitoring.DeviceConsultation
	}
	m.api.do("GET", "/api/v1/device", "", m.dev, &link)
	if link.Consultation == nil || link.Consultation.ID != c.ID {
		t.Fatalf("the device is not offered the consultation: %+v", link.Consultation)
	}
	dcfg := dev.config(link.Consultation.Link)
	dcfg.SendVitals = true
	dev.s = mustJoin(t, ctx, dcfg)

	for _, x := range []struct {
		g    *member
		link string
	}{{pat, c.JoinURL}, {guest, guestInv.JoinURL}, {doc, docInv.JoinURL}} {
		x.g.s = mustJoin(t, ctx, x.g.config(x.link))
		if st := x.g.s.Welcome().State; st != protocol.StateWaiting {
			t.Fatalf("%s joined %s, want waiting", x.g.name, st)
		}
	}
	waitFor(t, ctx, "three people in the waiting room", func() bool { return len(prov.s.Waiting()) == 3 })
	for _, w := range prov.s.Waiting() {
		if err := prov.s.Admit(ctx, w.ID); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range people[1:] {
		if err := g.s.WaitAdmitted(ctx); err != nil {
			t.Fatalf("%s not admitted: %v", g.name, err)
		}
	}
	sending, stop := context.WithCancel(ctx)
	defer stop()
	for _, g := range people {
		go writeVideo(sending, g.cam)
	}
	start := time.Now()
	all := append(people[:4:4], dev)
	for _, g := range all {
		for _, o := range all {
			if o != g {
				waitFor(t, ctx, g.name+"'s peer connection to "+o.name, func() bool { return g.connectedTo(o.s.ID()) })
			}
		}
	}
	t.Logf("the mesh of 4 people and a device was connected %s after everyone was admitted", time.Since(start).Round(time.Millisecond))

	checkMeshFlows(t, ctx, people, dev)
	checkChatAndFile(t, ctx, prov, pat, guest, doc, dev)

	// The guest turns the camera off; everyone else sees it off, as said rather than guessed.
	if err := guest.s.SetMedia(ctx, true, false, false); err != nil {
		t.Fatal(err)
	}
	for _, g := range []*member{prov, pat, doc} {
		waitFor(t, ctx, g.name+" to see the guest's camera off", func() bool {
			return g.sees(guest, func(m protocol.MediaState) bool { return m == protocol.MediaState{Audio: true} })
		})
	}

	checkScreens(t, ctx, sending, prov, pat, guest, doc, dev)
	checkRemoval(t, ctx, guestInv.JoinURL, prov, pat, guest, doc, dev)
}

// checkMeshFlows waits for the video of every person at every other person, the test channel's
// message both ways on every pair, the device included, and the device's readings at every person;
// the device gets no media.
func checkMeshFlows(t *testing.T, ctx context.Context, people []*member, dev *member) {
	t.Helper()
	for _, g := range people {
		for _, o := range people {
			if o == g {
				continue
			}
			key := o.s.ID() + " camera-" + o.tag
			waitFor(t, ctx, g.name+" to receive "+o.name+"'s video", func() bool { return g.got(func(g *member) bool { return g.packets[key] >= 20 }) })
		}
	}
	all := append(people[:len(people):len(people)], dev)
	for _, g := range all {
		for _, o := range all {
			if o == g || (g == dev && o == dev) {
				continue
			}
			want := "hello from " + o.name
			waitFor(t, ctx, g.name+" to get "+o.name+"'s data channel message", func() bool {
				return g.got(func(g *member) bool { return g.hellos[o.s.ID()] == want })
			})
		}
	}
	// A device sends and receives no media, but streams its readings to every person.
	reading := func() {
		if err := dev.s.SendReading(vitals.Reading{Code: vitals.OxygenSaturation, Value: vitals.Float(97), Unit: "%", Time: time.Now()}); err != nil {
			t.Errorf("send reading: %v", err)
		}
	}
	for _, g := range people {
		waitFor(t, ctx, g.name+" to get the device's reading", func() bool {
			reading()
			return g.got(func(g *member) bool { return g.readings[dev.s.ID()] > 0 })
		})
	}
	if dev.got(func(d *member) bool { return len(d.packets) > 0 }) {
		t.Fatalf("the device received media: %v", dev.packets)
	}
}

// checkChatAndFile sends one chat message from the patient to everyone and one file from the
// clinician to the patient only.
func checkChatAndFile(t *testing.T, ctx context.Context, prov, pat, guest, doc, dev *member) {
	t.Helper()
	for _, p := range pat.s.Peers() {
		if err := p.WaitChat(ctx); err != nil {
			t.Fatal(err)
		}
	}
	sent, err := pat.s.SendChat("Hello everyone, Marta will translate for my mother")
	if err != nil {
		t.Fatalf("chat to everyone: %v", err)
	}
	for _, g := range []*member{prov, guest, doc} {
		waitFor(t, ctx, g.name+" to get the patient's chat message", func() bool {
			return g.got(func(g *member) bool {
				ms := g.chats[pat.s.ID()]
				return len(ms) == 1 && ms[0].ID == sent.ID && ms[0].Text == sent.Text
			})
		})
		waitFor(t, ctx, "the patient to get "+g.name+"'s receipt", func() bool {
			return pat.got(func(p *member) bool { r := p.receipts[g.s.ID()]; return len(r) == 1 && r[0] == sent.ID })
		})
	}

	data := bytes.Repeat([]byte("CBC: Hb 13.5 g/dL\n"), 40000)
	sum := sha256.Sum256(data)
	to := doc.s.Peer(pat.s.ID())
	tr, err := to.SendFile(ctx, client.FileInfo{Name: "lab-results.txt", MIME: "text/plain", Size: int64(len(data))}, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Wait(ctx); err != nil {
		t.Fatalf("send the file to the patient: %v", err)
	}
	pat.mu.Lock()
	in := pat.files[doc.s.ID()]
	pat.mu.Unlock()
	if len(in) != 1 {
		t.Fatalf("the patient received %d files from the clinician, want 1", len(in))
	}
	if err := in[0].Wait(ctx); err != nil || in[0].SHA256() != hex.EncodeToString(sum[:]) || in[0].Info().Name != "lab-results.txt" {
		t.Fatalf("the patient's file: %v, %+v, sha256 %s", err, in[0].Info(), in[0].SHA256())
	}
	pat.mu.Lock()
	written := hex.EncodeToString(pat.sums[in[0]].Sum(nil))
	pat.mu.Unlock()
	if written != hex.EncodeToString(sum[:]) {
		t.Fatalf("the patient's program was handed other bytes (sha256 %s)", written)
	}
	for _, g := range []*member{prov, guest, doc, dev} {
		if n := g.got(func(g *member) bool {
			n := 0
			for _, f := range g.files {
				n += len(f)
			}
			return n > 0
		}); n {
			t.Fatalf("%s received a file sent to the patient only", g.name)
		}
	}
	if dev.got(func(d *member) bool { return len(d.chats) > 0 }) {
		t.Fatal("the device was sent the chat message")
	}
}

// checkScreens: the provider's screen reaches the three others; a patient may share only once
// allowed, and taking it back stops the patient's screen for everyone.
func checkScreens(t *testing.T, ctx, sending context.Context, prov, pat, guest, doc, dev *member) {
	t.Helper()
	screen := videoTrack(t, "screen-provider", "screen-provider")
	if err := prov.s.PublishScreen(ctx, screen); err != nil {
		t.Fatal(err)
	}
	go writeVideo(sending, screen)
	for _, g := range []*member{pat, guest, doc} {
		key := prov.s.ID() + " screen-provider"
		waitFor(t, ctx, g.name+" to receive the provider's screen", func() bool {
			return g.got(func(g *member) bool { return g.packets[key] >= 20 }) && g.sees(prov, func(m protocol.MediaState) bool { return m.Screen })
		})
	}
	if dev.got(func(d *member) bool { return len(d.packets) > 0 }) {
		t.Fatal("the device was sent the screen")
	}

	patScreen := videoTrack(t, "screen-patient", "screen-patient")
	if err := pat.s.PublishScreen(ctx, patScreen); !errors.Is(err, client.ErrShareNotAllowed) {
		t.Fatalf("the patient shares unasked: %v, want ErrShareNotAllowed", err)
	}
	if err := prov.s.AllowShare(ctx, pat.s.ID(), true); err != nil {
		t.Fatal(err)
	}
	waitSessionEvent(t, ctx, pat.s, "share_allowed", func(e client.Event) bool { return e.Type == client.EventShareAllowed && e.Allowed })
	if err := pat.s.PublishScreen(ctx, patScreen); err != nil {
		t.Fatalf("the patient shares once allowed: %v", err)
	}
	go writeVideo(sending, patScreen)
	waitFor(t, ctx, "the clinician to receive the patient's screen", func() bool {
		return doc.got(func(g *member) bool { return g.packets[pat.s.ID()+" screen-patient"] >= 20 })
	})
	if err := doc.s.AllowShare(ctx, pat.s.ID(), false); err != nil {
		t.Fatal(err)
	}
	for _, g := range []*member{prov, guest, doc} {
		waitFor(t, ctx, g.name+" to see the patient stop sharing", func() bool { return g.sees(pat, func(m protocol.MediaState) bool { return !m.Screen }) })
	}
	waitFor(t, ctx, "the patient's client to stop sharing", func() bool { return !pat.s.CanShare() && !pat.s.Media().Screen })
	if err := pat.s.PublishScreen(ctx, patScreen); !errors.Is(err, client.ErrShareNotAllowed) {
		t.Fatalf("the patient shares after the permission was taken back: %v", err)
	}

	// The provider stops sharing: the others see it, and the screen's packets stop.
	if err := prov.s.UnpublishScreen(ctx); err != nil {
		t.Fatal(err)
	}
	for _, g := range []*member{pat, guest, doc} {
		waitFor(t, ctx, g.name+" to see the provider stop sharing", func() bool { return g.sees(prov, func(m protocol.MediaState) bool { return !m.Screen }) })
	}
	key := prov.s.ID() + " screen-provider"
	n := func() int { doc.mu.Lock(); defer doc.mu.Unlock(); return doc.packets[key] }
	stopped := n()
	time.Sleep(300 * time.Millisecond)
	if later := n(); later != stopped {
		t.Fatalf("the provider's screen goes on after it was unpublished: %d packets, then %d", stopped, later)
	}
}

// checkRemoval: the provider removes the guest, whose session ends with ErrRemoved without trying to
// resume; the others see the guest leave, removed; the guest's link no longer joins.
func checkRemoval(t *testing.T, ctx context.Context, guestLink string, prov, pat, guest, doc, dev *member) {
	t.Helper()
	if err := prov.s.Remove(ctx, guest.s.ID()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-guest.s.Done():
	case <-ctx.Done():
		t.Fatal("the removed guest's session did not end")
	}
	if err := guest.s.Err(); !errors.Is(err, client.ErrRemoved) {
		t.Fatalf("the removed guest's session ended with %v, want ErrRemoved", err)
	}
	removed := false
	closed := waitSessionEvent(t, ctx, guest.s, "the guest's session to close", func(e client.Event) bool {
		if e.Type == client.EventReconnecting || e.Type == client.EventReconnected {
			t.Error("the removed guest's session tried to resume")
		}
		removed = removed || e.Type == client.EventRemoved
		return e.Type == client.EventClosed
	})
	if !removed || !errors.Is(closed.Err, client.ErrRemoved) {
		t.Fatalf("the guest's events: removed %v, closed with %v; want EventRemoved, then EventClosed with ErrRemoved", removed, closed.Err)
	}
	for _, g := range []*member{prov, pat, doc, dev} {
		waitSessionEvent(t, ctx, g.s, g.name+" to see the guest removed", func(e client.Event) bool {
			return e.Type == client.EventPeerLeft && e.Peer.ID == guest.s.ID() && e.Reason == protocol.ReasonRemoved
		})
	}
	_, err := client.Join(ctx, client.Config{Link: guestLink, Name: "Marta", API: loopbackAPI(), NoReconnect: true})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != errcode.BadToken {
		t.Fatalf("the removed guest's link joined again: %v, want bad_token", err)
	}
}
