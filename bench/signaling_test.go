package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/telemed/telemed/client"
)

// joinTimeout bounds one join; a join that takes longer fails the benchmark.
const joinTimeout = 30 * time.Second

// BenchmarkJoinToDataChannel times one 1:1 connection from nothing to an open data channel, through
// telemed and without any server.
//
//   - telemed: a provider Go client is in the consultation and admits whoever enters its waiting room.
//     Timed: the patient's client.Join (WebSocket, join, welcome), the waiting room and admission, the
//     peer connections on both sides, offer, answer and trickled candidates relayed by the server, ICE,
//     DTLS and SCTP, until the patient's data channel is open.
//   - direct: the floor. The same two pion peers with the same settings, signaled by function calls in
//     this process. Timed: both peer connections, offer, answer and trickled candidates, ICE, DTLS and
//     SCTP, until the offerer's data channel is open.
//
// Per iteration it reports ns/op and ms/op (means) and the joins' median and 95th percentile.
func BenchmarkJoinToDataChannel(b *testing.B) {
	b.Run("telemed", func(b *testing.B) { benchTelemed(b, false) })
	b.Run("direct", func(b *testing.B) { benchDirect(b, false) })
}

// BenchmarkJoinPhases runs the same joins as BenchmarkJoinToDataChannel and reports the median time,
// from the start, at which each milestone is reached on the side that opens the data channel:
//
//	welcome-ms  client.Join has returned (telemed only)
//	lobby-ms    the provider sees the patient in its waiting room (telemed only)
//	pc-ms       the offerer's peer connection and data channel exist
//	offer-ms    the offer is the local description (signaling state have-local-offer)
//	answer-ms   the answer is applied (signaling state stable again)
//	ice-ms      ICE connected
//	dtls-ms     DTLS connected
//	open-ms     the data channel is open
//
// telemed's offer and answer are marked by pion's signaling state handler, which runs on a goroutine
// of its own and so may mark them a little late; direct marks them where its code makes them.
func BenchmarkJoinPhases(b *testing.B) {
	b.Run("telemed", func(b *testing.B) { benchTelemed(b, true) })
	b.Run("direct", func(b *testing.B) { benchDirect(b, true) })
}

var phaseNames = []string{"welcome", "lobby", "pc", "offer", "answer", "ice", "dtls", "open"}

// milestones records when each phase of one join was first reached.
type milestones struct {
	mu    sync.Mutex
	start time.Time
	at    map[string]time.Duration
}

func newMilestones() *milestones { return &milestones{at: make(map[string]time.Duration)} }

func (m *milestones) begin() {
	m.mu.Lock()
	m.start = time.Now()
	m.mu.Unlock()
}

func (m *milestones) mark(name string) {
	if m == nil {
		return
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.at[name]; !ok && !m.start.IsZero() {
		m.at[name] = now.Sub(m.start)
	}
}

// watch marks the milestones of pc's negotiation. Its handlers are ones the client package leaves
// unset (signaling state, ICE connection state, DTLS state), so watching does not change its behavior.
// pion calls the signaling state handler on a goroutine of its own, so offer and answer may be marked
// a little late; the others are called synchronously.
func (m *milestones) watch(pc *webrtc.PeerConnection) {
	if m == nil {
		return
	}
	pc.OnSignalingStateChange(func(s webrtc.SignalingState) {
		switch s {
		case webrtc.SignalingStateHaveLocalOffer:
			m.mark("offer")
		case webrtc.SignalingStateStable:
			m.mark("answer")
		}
	})
	m.watchTransport(pc)
}

// watchTransport marks when pc's ICE and DTLS transports connect.
func (m *milestones) watchTransport(pc *webrtc.PeerConnection) {
	if m == nil {
		return
	}
	pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		if s == webrtc.ICEConnectionStateConnected {
			m.mark("ice")
		}
	})
	pc.SCTP().Transport().OnStateChange(func(s webrtc.DTLSTransportState) {
		if s == webrtc.DTLSTransportStateConnected {
			m.mark("dtls")
		}
	})
}

// phaseLog collects the milestones of every join of a benchmark run.
type phaseLog map[string][]time.Duration

func (l phaseLog) add(m *milestones) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, d := range m.at {
		l[k] = append(l[k], d)
	}
}

func (l phaseLog) report(b *testing.B) {
	for _, k := range phaseNames {
		if ds := l[k]; len(ds) > 0 {
			b.ReportMetric(ms(quantile(ds, 0.5)), k+"-ms")
		}
	}
}

// provider is a provider's session that admits everyone who enters its waiting room.
type provider struct {
	s    *client.Session
	done chan struct{}
}

func joinProvider(ctx context.Context, link string, api *webrtc.API, m *milestones) (*provider, error) {
	s, err := client.Join(ctx, client.Config{Link: link, API: api, Logger: quiet, NoReconnect: true})
	if err != nil {
		return nil, fmt.Errorf("provider join: %w", err)
	}
	p := &provider{s: s, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for ev := range s.Events() {
			switch ev.Type {
			case client.EventLobby:
				for _, w := range ev.Waiting {
					m.mark("lobby")
					actx, cancel := context.WithTimeout(context.Background(), joinTimeout)
					s.Admit(actx, w.ID)
					cancel()
				}
			case client.EventClosed:
				return
			}
		}
	}()
	return p, nil
}

func (p *provider) leave(ctx context.Context) {
	p.s.Leave(ctx)
	<-p.done
}

func benchTelemed(b *testing.B, phases bool) {
	e := startServer(b)
	provAPI, patAPI := loopbackAPI(), loopbackAPI()
	joins := make([]time.Duration, 0, b.N)
	log := phaseLog{}
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		ctx, cancel := context.WithTimeout(context.Background(), joinTimeout)
		var m *milestones
		if phases {
			m = newMilestones()
		}
		c := e.newConsultation(b)
		v, err := openVisit(ctx, c.StartURL, c.JoinURL, provAPI, patAPI, m)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		d, err := v.join(ctx)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		joins = append(joins, d)
		if m != nil {
			log.add(m)
		}
		v.end(ctx)
		cancel()
	}
	reportJoins(b, joins)
	log.report(b)
}

// visit is one consultation with its provider in it, admitting whoever waits, and a patient about to
// join: openVisit prepares it, join is what the benchmarks time, end hangs both up.
type visit struct {
	prov   *provider
	pat    *client.Session
	cfg    client.Config // the patient's
	opened chan struct{} // closed when the patient's data channel is open
	m      *milestones
}

// openVisit joins the provider with startURL and prepares the patient's join with joinURL (the two
// links may name different nodes).
func openVisit(ctx context.Context, startURL, joinURL string, provAPI, patAPI *webrtc.API, m *milestones) (*visit, error) {
	prov, err := joinProvider(ctx, startURL, provAPI, m)
	if err != nil {
		return nil, err
	}
	// A provider is in the consultation well before the patient arrives; let the peer connection
	// it prepares in the background be ready, as it would be, rather than compete with the timed
	// join. A busy wait, not a sleep: after a sleep both cores are idle and every wake-up in the
	// timed join is slower, which direct, with no pause between its joins, does not pay.
	for t0 := time.Now(); time.Since(t0) < 20*time.Millisecond; {
	}
	v := &visit{prov: prov, opened: make(chan struct{}), m: m}
	var once sync.Once
	v.cfg = client.Config{
		Link: joinURL, Name: "Ada Lovelace", API: patAPI, Logger: quiet, NoReconnect: true,
		DataChannels: []client.DataChannelSpec{{Label: "bench"}},
		OnDataChannel: func(p *client.Peer, dc *webrtc.DataChannel) {
			if dc.Label() != "bench" {
				return
			}
			m.mark("pc")
			m.watch(p.PC)
			dc.OnOpen(func() {
				m.mark("open")
				once.Do(func() { close(v.opened) })
			})
		},
	}
	return v, nil
}

// join is the patient's join until its data channel is open, and how long that took.
func (v *visit) join(ctx context.Context) (time.Duration, error) {
	if v.m != nil {
		v.m.begin()
	}
	start := time.Now()
	pat, err := client.Join(ctx, v.cfg)
	if err != nil {
		return 0, fmt.Errorf("patient join: %w", err)
	}
	v.pat = pat
	v.m.mark("welcome")
	select {
	case <-v.opened:
	case <-ctx.Done():
		return 0, fmt.Errorf("patient's data channel did not open: %w", ctx.Err())
	}
	return time.Since(start), nil
}

// end hangs up the patient, if it joined, and the provider.
func (v *visit) end(ctx context.Context) {
	if v.pat != nil {
		v.pat.Leave(ctx)
	}
	v.prov.leave(ctx)
}

// directPeer is one pion peer signaled by function calls. Candidates that arrive before the remote
// description are held back, as the client package does.
type directPeer struct {
	pc        *webrtc.PeerConnection
	mu        sync.Mutex
	remoteSet bool
	pending   []webrtc.ICECandidateInit
}

func (p *directPeer) addCandidate(c webrtc.ICECandidateInit) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.remoteSet {
		p.pending = append(p.pending, c)
		return
	}
	p.pc.AddICECandidate(c)
}

func (p *directPeer) setRemote(d webrtc.SessionDescription) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.pc.SetRemoteDescription(d); err != nil {
		return err
	}
	p.remoteSet = true
	for _, c := range p.pending {
		p.pc.AddICECandidate(c)
	}
	p.pending = nil
	return nil
}

// trickleTo sends p's candidates to the other peer as they are gathered.
func (p *directPeer) trickleTo(other *directPeer) {
	p.pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			other.addCandidate(c.ToJSON())
		}
	})
}

// connectDirect connects two peers in this process and returns once the offerer's data channel is
// open. closeAll releases them.
func connectDirect(ctx context.Context, offerAPI, answerAPI *webrtc.API, m *milestones) (closeAll func(), err error) {
	var peers []*webrtc.PeerConnection
	closeAll = func() {
		for _, pc := range peers {
			pc.Close()
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	offerPC, err := offerAPI.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return closeAll, err
	}
	peers = append(peers, offerPC)
	offerer := &directPeer{pc: offerPC}
	opened := make(chan struct{})
	var once sync.Once
	dc, err := offerPC.CreateDataChannel("bench", nil)
	if err != nil {
		return closeAll, err
	}
	dc.OnOpen(func() {
		m.mark("open")
		once.Do(func() { close(opened) })
	})
	m.mark("pc")
	m.watchTransport(offerPC) // offer and answer are marked below, where they happen

	answerPC, err := answerAPI.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return closeAll, err
	}
	peers = append(peers, answerPC)
	answerer := &directPeer{pc: answerPC}
	offerer.trickleTo(answerer)
	answerer.trickleTo(offerer)

	offer, err := offerPC.CreateOffer(nil)
	if err != nil {
		return closeAll, err
	}
	if err := offerPC.SetLocalDescription(offer); err != nil {
		return closeAll, err
	}
	m.mark("offer")
	if err := answerer.setRemote(*offerPC.LocalDescription()); err != nil {
		return closeAll, err
	}
	answer, err := answerPC.CreateAnswer(nil)
	if err != nil {
		return closeAll, err
	}
	if err := answerPC.SetLocalDescription(answer); err != nil {
		return closeAll, err
	}
	if err := offerer.setRemote(*answerPC.LocalDescription()); err != nil {
		return closeAll, err
	}
	m.mark("answer")
	select {
	case <-opened:
		return closeAll, nil
	case <-ctx.Done():
		return closeAll, errors.New("data channel did not open: " + ctx.Err().Error())
	}
}

func benchDirect(b *testing.B, phases bool) {
	offerAPI, answerAPI := loopbackAPI(), loopbackAPI()
	joins := make([]time.Duration, 0, b.N)
	log := phaseLog{}
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		ctx, cancel := context.WithTimeout(context.Background(), joinTimeout)
		var m *milestones
		if phases {
			m = newMilestones()
			m.begin()
		}
		b.StartTimer()
		start := time.Now()
		closeAll, err := connectDirect(ctx, offerAPI, answerAPI, m)
		d := time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		joins = append(joins, d)
		if m != nil {
			log.add(m)
		}
		closeAll()
		cancel()
	}
	reportJoins(b, joins)
	log.report(b)
}
