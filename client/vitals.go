package client

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/telemed/telemed/vitals"
)

// Labels of the live vitals channels (docs/monitoring.md). A device agent (Config.SendVitals) opens
// them towards every peer once connected; a receiver reads them into Config.OnReading.
const (
	// VitalsLabel carries discrete readings (SpO2, blood pressure, ...): reliable and ordered, since
	// each one matters and they are few.
	VitalsLabel = "telemed-vitals"
	// WaveformLabel carries waveform pieces (the ECG in 20 ms pieces): unordered and never
	// retransmitted, because a piece that comes late would be drawn in the wrong place anyway.
	WaveformLabel = "telemed-waveform"
)

// roleDevice is a patient's monitoring device's role in a consultation (docs/signaling.md).
const roleDevice = "device"

// Live vitals limits.
const (
	// MaxVitalsFrame is the largest frame on a vitals channel, in bytes. A long waveform must be sent
	// in pieces (the agent sends 20 ms ones).
	MaxVitalsFrame = 64 << 10
	// waveformHighWater is how much may wait in a waveform channel's buffer before new pieces are
	// dropped: past it the peer is not keeping up, and a backlog would only be drawn late.
	waveformHighWater = 1 << 20
	// vitalsHighWater bounds a reliable vitals channel towards a peer that stopped reading: discrete
	// readings are about 100 bytes, so this is hours of them.
	vitalsHighWater = 4 << 20
)

// VitalsStats counts one peer's live vitals frames, both ways: for a program's status and for tests.
type VitalsStats struct {
	// Sent is the frames sent to the peer; Dropped those not sent because it was not keeping up.
	Sent, Dropped uint64
	// Delivered is the readings received and handed to Config.OnReading.
	Delivered uint64
	// Malformed is the frames that could not be read; Late the waveform pieces that came after a later
	// one; Invalid the readings vitals.Validate refused. All three were dropped.
	Malformed, Late, Invalid uint64
}

// vitalsState is what a Peer knows of the vitals channels. Its channels are those this side opened
// (Config.SendVitals); channels the peer opened are read by their own message callbacks.
type vitalsState struct {
	mu    sync.Mutex
	out   [2]*webrtc.DataChannel // vitals, waveform
	seq   [2]uint64              // the last seq sent on each
	stats VitalsStats
}

// The two channels, by index into vitalsState.out.
const (
	vitalsDiscrete = 0
	vitalsWaveform = 1
)

func vitalsInit(i int) (string, *webrtc.DataChannelInit) {
	if i == vitalsDiscrete {
		return VitalsLabel, nil
	}
	ordered, retransmits := false, uint16(0)
	return WaveformLabel, &webrtc.DataChannelInit{Ordered: &ordered, MaxRetransmits: &retransmits}
}

// VitalsStats returns the counts of live vitals frames to and from the peer.
func (p *Peer) VitalsStats() VitalsStats {
	p.vit.mu.Lock()
	defer p.vit.mu.Unlock()
	return p.vit.stats
}

// openVitals opens the vitals channels towards the peer if this session sends vitals. It is called
// whenever the connection becomes connected, so it opens only what is not open already (after an
// ICE restart they still are). The chat channel made the connection's data section, so a new
// channel opens at once, without a renegotiation.
func (p *Peer) openVitals() {
	if !p.s.cfg.SendVitals {
		return
	}
	p.vit.mu.Lock()
	defer p.vit.mu.Unlock()
	for i, dc := range p.vit.out {
		if dc != nil && dc.ReadyState() != webrtc.DataChannelStateClosing && dc.ReadyState() != webrtc.DataChannelStateClosed {
			continue
		}
		label, init := vitalsInit(i)
		dc, err := p.PC.CreateDataChannel(label, init)
		if err != nil {
			p.s.log.Warn("telemed client: cannot open a vitals channel", "peer", p.ID, "label", label, "err", err)
			continue
		}
		p.vit.out[i], p.vit.seq[i] = dc, 0
	}
}

// SendReading sends a reading, as it is taken, to every peer in the call whose vitals channels are
// open (Config.SendVitals opens them): a waveform piece on WaveformLabel, anything else on
// VitalsLabel. It never waits for a peer: a peer that does not keep up loses waveform pieces (see
// VitalsStats). It returns an error only for what the caller can change: a reading that
// vitals.Validate refuses (a receiver would drop it), one too large for a frame, or a closed session.
func (s *Session) SendReading(r vitals.Reading) error {
	r, err := vitals.Validate(r, time.Now())
	if err != nil {
		return fmt.Errorf("send reading: %w", err)
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	body, err := encodeJSON(r)
	if err != nil {
		return fmt.Errorf("send reading: %w", err)
	}
	// Room for the longest seq, so that a frame that fits here fits whatever its seq.
	if n := len(framePrefix) + 20 + len(frameMiddle) + len(body) + 1; n > MaxVitalsFrame {
		return fmt.Errorf("send reading: %s is %d bytes as a frame, over %d; send a waveform in shorter pieces", r.Code, n, MaxVitalsFrame)
	}
	ch := vitalsDiscrete
	if len(r.Samples) > 0 {
		ch = vitalsWaveform
	}
	for _, p := range s.Peers() {
		if p.role() != roleDevice {
			p.sendVitals(ch, body)
		}
	}
	return nil
}

const (
	framePrefix = `{"type":"reading","seq":`
	frameMiddle = `,"reading":`
)

// sendVitals sends an encoded reading on one of the channels towards the peer, if it is open.
func (p *Peer) sendVitals(ch int, body string) {
	p.vit.mu.Lock()
	defer p.vit.mu.Unlock()
	dc := p.vit.out[ch]
	if dc == nil || dc.ReadyState() != webrtc.DataChannelStateOpen {
		return
	}
	limit := uint64(vitalsHighWater)
	if ch == vitalsWaveform {
		limit = waveformHighWater
	}
	if dc.BufferedAmount() > limit {
		p.vit.stats.Dropped++
		return
	}
	seq := p.vit.seq[ch] + 1
	frame := framePrefix + strconv.FormatUint(seq, 10) + frameMiddle + body + "}"
	if err := dc.SendText(frame); err != nil {
		p.vit.stats.Dropped++
		p.s.log.Debug("telemed client: send reading", "peer", p.ID, "label", dc.Label(), "err", err)
		return
	}
	p.vit.seq[ch] = seq
	p.vit.stats.Sent++
}

// vitalsFrame is one message on a vitals channel.
type vitalsFrame struct {
	Type    string          `json:"type"`
	Seq     uint64          `json:"seq"`
	Reading *vitals.Reading `json:"reading"`
}

// parseVitalsFrame reads a frame as docs/monitoring.md says. It does not validate the reading.
func parseVitalsFrame(msg webrtc.DataChannelMessage) (vitalsFrame, error) {
	var f vitalsFrame
	if err := decodeFrame(msg, &f, frameRules{limit: MaxVitalsFrame, binary: "a binary frame on a vitals channel", kind: "vitals"}); err != nil {
		return vitalsFrame{}, err
	}
	switch {
	case f.Type == "":
		return f, errors.New("type is missing")
	case f.Type != "reading":
		return f, fmt.Errorf("unknown type %s", strconv.Quote(clipText(f.Type)))
	case f.Seq == 0:
		return f, errors.New("seq is missing (it counts from 1)")
	case f.Reading == nil:
		return f, errors.New("reading is missing")
	}
	return f, nil
}

// vitalsReader reads the frames of one channel the peer opened. Its methods run on the channel's
// message callback, one at a time.
type vitalsReader struct {
	p        *Peer
	label    string
	waveform bool
	last     uint64 // the seq of the last waveform piece delivered
}

// receiveVitals reads a vitals channel the peer opened into Config.OnReading.
func (p *Peer) receiveVitals(dc *webrtc.DataChannel) {
	r := &vitalsReader{p: p, label: dc.Label(), waveform: dc.Label() == WaveformLabel}
	dc.OnMessage(func(msg webrtc.DataChannelMessage) { r.onFrame(msg, time.Now()) })
}

// onFrame delivers the reading of one frame, or drops the frame and counts why.
func (r *vitalsReader) onFrame(msg webrtc.DataChannelMessage, now time.Time) {
	p := r.p
	f, err := parseVitalsFrame(msg)
	if err != nil {
		p.countVitals(func(s *VitalsStats) { s.Malformed++ })
		p.dataError(fmt.Errorf("%s frame from %s: %w", r.label, p.ID, err))
		return
	}
	if r.waveform && f.Seq <= r.last {
		p.countVitals(func(s *VitalsStats) { s.Late++ })
		return
	}
	reading, err := vitals.Validate(*f.Reading, now)
	if err != nil {
		p.countVitals(func(s *VitalsStats) { s.Invalid++ })
		p.dataError(fmt.Errorf("%s frame %d from %s: %w", r.label, f.Seq, p.ID, err))
		return
	}
	if r.waveform {
		r.last = f.Seq
	}
	p.countVitals(func(s *VitalsStats) { s.Delivered++ })
	if cb := p.s.cfg.OnReading; cb != nil {
		cb(p, reading)
	}
}

func (p *Peer) countVitals(f func(*VitalsStats)) {
	p.vit.mu.Lock()
	f(&p.vit.stats)
	p.vit.mu.Unlock()
}

// clipText shortens a peer's text for an error message.
func clipText(s string) string {
	const n = 40
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}
