package client

import (
	"context"
	"encoding/json"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/telemed/telemed/vitals"
)

// bareSession is a session with no signaling connection, for peers wired to each other by hand.
func bareSession(cfg Config) *Session {
	ctx, cancel := context.WithCancel(context.Background())
	return &Session{cfg: cfg, log: slog.New(slog.DiscardHandler), events: make(chan Event, 256), ctx: ctx, cancel: cancel,
		done: make(chan struct{}), peers: map[string]*Peer{}, changed: make(chan struct{})}
}

// vitalsPair connects a device's session to a viewer's over one real pion peer connection, without
// a server: the device opens the chat channel (the data section), as a newcomer would, and its vitals
// channels once connected.
func vitalsPair(t *testing.T, onReading func(*Peer, vitals.Reading)) (device *Session, viewer *Peer) {
	return vitalsPairAs(t, roleDevice, onReading)
}

// vitalsPairAs is vitalsPair with the sender in the role the viewer knows it by.
func vitalsPairAs(t *testing.T, senderRole string, onReading func(*Peer, vitals.Reading)) (device *Session, viewer *Peer) {
	t.Helper()
	ds := bareSession(Config{SendVitals: true})
	vs := bareSession(Config{OnReading: onReading})
	api := NewAPI()
	newPC := func() *webrtc.PeerConnection {
		pc, err := api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			t.Fatal(err)
		}
		return pc
	}
	dp := &Peer{ID: "viewer", Role: "provider", s: ds, PC: newPC()}
	vp := &Peer{ID: "device", Role: senderRole, s: vs, PC: newPC()}
	ds.peers[dp.ID], vs.peers[vp.ID] = dp, vp
	t.Cleanup(func() { dp.close(); vp.close() })
	dp.PC.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateConnected {
			dp.openVitals()
		}
	})
	vp.PC.OnDataChannel(func(dc *webrtc.DataChannel) { vp.route(dc, true) })
	if _, err := dp.PC.CreateDataChannel(ChatLabel, nil); err != nil {
		t.Fatal(err)
	}
	offer, err := dp.PC.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(dp.PC)
	dp.PC.SetLocalDescription(offer)
	<-gathered
	if err := vp.PC.SetRemoteDescription(*dp.PC.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	answer, err := vp.PC.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered = webrtc.GatheringCompletePromise(vp.PC)
	vp.PC.SetLocalDescription(answer)
	<-gathered
	if err := dp.PC.SetRemoteDescription(*vp.PC.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	// Both vitals channels open on the device's side.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		dp.vit.mu.Lock()
		open := dp.vit.out[0] != nil && dp.vit.out[1] != nil &&
			dp.vit.out[0].ReadyState() == webrtc.DataChannelStateOpen && dp.vit.out[1].ReadyState() == webrtc.DataChannelStateOpen
		dp.vit.mu.Unlock()
		if open {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the vitals channels did not open")
		}
	}
	return ds, vp
}

func pulse(v float64, at time.Time) vitals.Reading {
	return vitals.Reading{Code: vitals.HeartRate, Value: vitals.Float(v), Unit: "/min", Time: at}
}

func ecgPiece(at time.Time, samples ...float64) vitals.Reading {
	return vitals.Reading{Code: vitals.ECG, Unit: "mV", Time: at, PeriodMS: 4, Samples: samples}
}

func TestVitalsGoToGo(t *testing.T) {
	var mu sync.Mutex
	var got []vitals.Reading
	device, viewer := vitalsPair(t, func(_ *Peer, r vitals.Reading) {
		mu.Lock()
		got = append(got, r)
		mu.Unlock()
	})
	// The channels are what the contract says.
	dp := device.Peers()[0]
	if dc := dp.vit.out[vitalsDiscrete]; dc.Label() != VitalsLabel || !dc.Ordered() || dc.MaxRetransmits() != nil {
		t.Errorf("vitals channel %s ordered=%v retransmits=%v; want reliable and ordered", dc.Label(), dc.Ordered(), dc.MaxRetransmits())
	}
	if dc := dp.vit.out[vitalsWaveform]; dc.Label() != WaveformLabel || dc.Ordered() || dc.MaxRetransmits() == nil || *dc.MaxRetransmits() != 0 {
		t.Errorf("waveform channel %s ordered=%v retransmits=%v; want unordered, none", dc.Label(), dc.Ordered(), dc.MaxRetransmits())
	}

	t0 := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	if err := device.SendReading(pulse(72, t0)); err != nil {
		t.Fatal(err)
	}
	bp := vitals.Reading{Code: vitals.BloodPressure, Time: t0, Components: []vitals.Component{
		{Code: vitals.Diastolic, Value: vitals.Float(82), Unit: "mm[Hg]"}, {Code: vitals.Systolic, Value: vitals.Float(128), Unit: "mm[Hg]"}}}
	if err := device.SendReading(bp); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := device.SendReading(ecgPiece(t0.Add(time.Duration(i)*20*time.Millisecond), 0.1, 0.2, 1.1, -0.2, 0)); err != nil {
			t.Fatal(err)
		}
	}
	// What a receiver would drop is refused here, with the reason.
	if err := device.SendReading(pulse(900, t0)); err == nil || !strings.Contains(err.Error(), "not physiologically possible") {
		t.Errorf("SendReading(900 /min) = %v", err)
	}
	long := ecgPiece(t0, make([]float64, 5000)...)
	for i := range long.Samples {
		long.Samples[i] = -1.2345678901234
	}
	if err := device.SendReading(long); err == nil || !strings.Contains(err.Error(), "shorter pieces") {
		t.Errorf("SendReading(5000 samples) = %v", err)
	}

	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		// Unordered pieces may overtake each other (then the older is dropped as late).
		if st := viewer.VitalsStats(); st.Delivered+st.Late == 12 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("received 12 frames; stats %+v", viewer.VitalsStats())
		}
	}
	mu.Lock()
	defer mu.Unlock()
	// Each channel keeps its own order; the two are not ordered with each other.
	var discrete, pieces []vitals.Reading
	for _, r := range got {
		if r.Code == vitals.ECG {
			pieces = append(pieces, r)
		} else {
			discrete = append(discrete, r)
		}
	}
	got = discrete
	if len(pieces) < 5 || len(discrete) != 2 {
		t.Errorf("%d ECG pieces of 10, %d discrete readings of 2", len(pieces), len(discrete))
	}
	if got[0].Code != vitals.HeartRate || *got[0].Value != 72 || !got[0].Time.Equal(t0) {
		t.Errorf("first reading %+v", got[0])
	}
	// Canonical: components in catalog order.
	if got[1].Code != vitals.BloodPressure || got[1].Components[0].Code != vitals.Systolic {
		t.Errorf("second reading %+v", got[1])
	}
	if s := dp.VitalsStats(); s.Sent != 12 || s.Dropped != 0 {
		t.Errorf("device stats %+v", s)
	}
	if s := viewer.VitalsStats(); s.Malformed+s.Invalid != 0 {
		t.Errorf("viewer stats %+v", s)
	}
	// A peer that opened again after the connection came back (ICE restart) keeps its channels.
	before := dp.vit.out
	dp.openVitals()
	if dp.vit.out != before {
		t.Error("openVitals opened new channels while the old ones were open")
	}
}

// TestVitalsReader feeds a receiver frames by hand: what it delivers, drops and reports.
func TestVitalsReader(t *testing.T) {
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	frame := func(seq uint64, r vitals.Reading) webrtc.DataChannelMessage {
		b, _ := json.Marshal(vitalsFrame{Type: "reading", Seq: seq, Reading: &r})
		return text(string(b))
	}
	var delivered []vitals.Reading
	var reported []error
	s := &Session{log: slog.New(slog.DiscardHandler), cfg: Config{
		OnReading:   func(_ *Peer, r vitals.Reading) { delivered = append(delivered, r) },
		OnDataError: func(_ *Peer, err error) { reported = append(reported, err) },
	}}
	p := &Peer{ID: "dev", s: s}
	wave := &vitalsReader{p: p, label: WaveformLabel, waveform: true}
	disc := &vitalsReader{p: p, label: VitalsLabel}

	for _, c := range []struct {
		r       *vitalsReader
		msg     webrtc.DataChannelMessage
		deliver bool
		report  string // in the reported error; "" = not reported
	}{
		{wave, frame(2, ecgPiece(now, 0.1)), true, ""},
		{wave, frame(1, ecgPiece(now.Add(-20*time.Millisecond), 0.1)), false, ""}, // late
		{wave, frame(2, ecgPiece(now, 0.1)), false, ""},                           // again
		{wave, frame(5, ecgPiece(now, 11)), false, "outside the possible"},
		{wave, frame(3, ecgPiece(now, 0.3)), true, ""}, // the invalid 5 was not delivered
		{disc, frame(1, pulse(70, now)), true, ""},
		{disc, frame(1, pulse(70, now)), true, ""}, // ordered channel: no seq check
		{disc, frame(2, pulse(70, now.Add(time.Hour))), false, "in the future"},
		{disc, text(`{"type":"reading","seq":0,"reading":{}}`), false, "seq is missing"},
		{disc, text(`{"type":"reading","seq":-1,"reading":{}}`), false, "not the JSON"},
		{disc, text(`{"type":"hello","seq":1}`), false, "unknown type"},
		{disc, text(`{"seq":1}`), false, "type is missing"},
		{disc, text(`{"type":"reading","seq":3}`), false, "reading is missing"},
		{disc, text(`{"type":"reading","seq":3,"reading":{"code":"8867-4","value":"x"}}`), false, "not the JSON"},
		{disc, webrtc.DataChannelMessage{Data: []byte(`{}`)}, false, "binary"},
		{disc, text(strings.Repeat(" ", MaxVitalsFrame+1)), false, "over 65536"},
	} {
		n, m := len(delivered), len(reported)
		c.r.onFrame(c.msg, now)
		if got := len(delivered) > n; got != c.deliver {
			t.Errorf("%.80s: delivered %v, want %v", c.msg.Data, got, c.deliver)
		}
		if c.report == "" && len(reported) > m {
			t.Errorf("%.80s: reported %v", c.msg.Data, reported[m])
		}
		if c.report != "" && (len(reported) == m || !strings.Contains(reported[m].Error(), c.report)) {
			t.Errorf("%.80s: reported %v, want %q", c.msg.Data, reported[m:], c.report)
		}
	}
	if st := p.VitalsStats(); st.Delivered != 4 || st.Late != 2 || st.Invalid != 2 || st.Malformed != 8 {
		t.Errorf("stats %+v", st)
	}
}

// FuzzVitalsFrame: parsing never panics, and a reading a receiver delivers is a frame of the
// contract carrying a reading vitals.Validate accepts, encoded within the frame limit.
func FuzzVitalsFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"reading","seq":1,"reading":{"code":"8867-4","value":72,"unit":"/min","time":"2026-11-24T10:00:00.250Z"}}`,
		`{"type":"reading","seq":42,"reading":{"code":"131329","unit":"mV","time":"2026-11-24T10:00:00Z","period_ms":4,"samples":[0.01,0.02,0.9,-0.2,0]}}`,
		`{"type":"reading","seq":7,"reading":{"code":"85354-9","time":"2026-11-24T10:05:00Z","components":[{"code":"8480-6","value":128,"unit":"mm[Hg]"},{"code":"8462-4","value":82,"unit":"mm[Hg]"}]}}`,
		`{"type":"reading","seq":1,"reading":{"code":"59408-5","value":97,"unit":"%","time":"2026-11-24T10:00:00Z"}}`,
		`{"type":"reading","seq":18446744073709551615,"reading":{"code":"9279-1","value":16,"unit":"/min","time":"2026-11-24T10:00:05Z"}}`,
		`{"type":"reading","seq":1,"reading":{"code":"131329","unit":"mV","time":"2026-11-24T10:00:00Z","period_ms":0.5,"samples":[1]}}`,
		`{"type":"reading","seq":1,"reading":{"code":"8867-4","value":1e999,"unit":"/min","time":"2026-11-24T10:00:00Z"}}`,
		`{"type":"reading","seq":1,"reading":{"code":"8310-5","value":36.8,"unit":"Cel","time":"1999-01-01T00:00:00Z"}}`,
		`{"type":"reading","seq":1,"reading":null}`,
		`{"type":"reading","seq":1.5}`,
		`{"type":"error"}`,
		`not json`, `{}`, `[]`, `null`, `{"type":7}`,
	} {
		f.Add(s, true)
	}
	f.Add("\x00\x01", false)
	now := time.Date(2026, 11, 24, 10, 1, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data string, isString bool) {
		var delivered []vitals.Reading
		s := &Session{log: slog.New(slog.DiscardHandler), cfg: Config{OnReading: func(_ *Peer, r vitals.Reading) { delivered = append(delivered, r) }}}
		p := &Peer{ID: "dev", s: s}
		for _, waveform := range []bool{false, true} {
			r := &vitalsReader{p: p, label: VitalsLabel, waveform: waveform}
			r.onFrame(webrtc.DataChannelMessage{IsString: isString, Data: []byte(data)}, now)
		}
		st := p.VitalsStats()
		if st.Delivered+st.Malformed+st.Late+st.Invalid != 2 {
			t.Fatalf("two frames, counted %+v", st)
		}
		for _, r := range delivered {
			if !isString || len(data) > MaxVitalsFrame {
				t.Fatalf("delivered %+v from a frame that is binary or too long", r)
			}
			again, err := vitals.Validate(r, now)
			if err != nil {
				t.Fatalf("delivered %+v, which Validate refuses: %v", r, err)
			}
			if !reflect.DeepEqual(again, r) {
				t.Fatalf("delivered %+v, not canonical (%+v)", r, again)
			}
		}
	})
}

// TestVitalsOnlyFromDevices: a person's client that opens vitals channels cannot pass readings off as
// a device's.
func TestVitalsOnlyFromDevices(t *testing.T) {
	var got atomic.Int64
	sender, viewer := vitalsPairAs(t, "patient", func(*Peer, vitals.Reading) { got.Add(1) })
	if err := sender.SendReading(pulse(72, time.Now())); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if n := got.Load(); n != 0 || viewer.VitalsStats().Delivered != 0 {
		t.Fatalf("%d readings from a patient's client delivered as vitals", n)
	}
}
