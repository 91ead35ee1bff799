package client

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/pion/webrtc/v4"

	"github.com/telemed/telemed/errcode"
)

// Labels of the data channels telemed itself uses (docs/datachannels.md). Channels with other labels
// are the program's own and reach Config.OnDataChannel.
const (
	ChatLabel = "telemed-chat"
	FileLabel = "telemed-file"
)

// Data channel tuning (docs/benchmarks.md). pion's default SCTP receive window (1 MiB) caps a transfer
// on a fast path; 4 MiB lets the window open and is the figure at which throughput stopped growing.
const (
	// SCTPReceiveBuffer is the SCTP receive buffer TuneSettingEngine sets.
	SCTPReceiveBuffer = 4 << 20
	// MaxChunkMessage is the largest file chunk message sent, header included: what browsers accept.
	MaxChunkMessage = 256 << 10
	// SendHighWater is how much a file sender lets wait in a channel's buffer before it stops reading
	// the file; it resumes at half.
	SendHighWater = 16 << 20
)

// TuneSettingEngine applies telemed's data channel settings to se. The default API of Config has
// them; a program that builds its own API should call it on its SettingEngine.
func TuneSettingEngine(se *webrtc.SettingEngine) {
	se.SetSCTPMaxReceiveBufferSize(SCTPReceiveBuffer)
	// pion would otherwise take messages of up to 1 GiB, each held whole in memory: a peer could make
	// this side hold a gigabyte at once. No telemed message is larger than a file chunk.
	se.SetSCTPMaxMessageSize(MaxChunkMessage)
}

// NewAPI returns the API Config uses when it has none: pion's default codecs and interceptors, with
// TuneSettingEngine's settings.
func NewAPI() *webrtc.API {
	var se webrtc.SettingEngine
	TuneSettingEngine(&se)
	return webrtc.NewAPI(webrtc.WithSettingEngine(se))
}

// channels is what a Peer knows of telemed's own data channels.
type channels struct {
	mu        sync.Mutex
	chat      []*webrtc.DataChannel // newest last; messages go out on the newest open one
	transfers map[string]*Transfer  // active transfers, both directions, by id
	incoming  int                   // active incoming transfers
	closed    bool                  // the peer connection was closed: no new transfers
	changed   chan struct{}         // closed and replaced when a chat channel opens or closes
}

// chatChangedLocked returns the channel that the next chat channel change closes. c.mu is held.
func (c *channels) chatChangedLocked() <-chan struct{} {
	if c.changed == nil {
		c.changed = make(chan struct{})
	}
	return c.changed
}

// chatChange wakes WaitChat.
func (c *channels) chatChange() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
}

// route takes a data channel the peer opened, or one this side opened, to where it belongs.
func (p *Peer) route(dc *webrtc.DataChannel, remote bool) {
	switch dc.Label() {
	case ChatLabel:
		p.attachChat(dc)
	case FileLabel:
		if remote {
			p.receiveFile(dc)
		}
	case VitalsLabel, WaveformLabel:
		// Readings are taken from devices only: a person's client cannot pass off made-up ones.
		if remote && p.role() == roleDevice {
			p.receiveVitals(dc)
		}
	default:
		if f := p.s.cfg.OnDataChannel; f != nil {
			f(p, dc)
		}
	}
}

// close closes the peer connection and ends its transfers as interrupted.
func (p *Peer) close() error {
	p.dcs.mu.Lock()
	p.dcs.closed = true
	active := make([]*Transfer, 0, len(p.dcs.transfers))
	for _, t := range p.dcs.transfers {
		active = append(active, t)
	}
	p.dcs.mu.Unlock()
	for _, t := range active {
		t.finish(errInterrupted(p), false)
	}
	p.dcs.chatChange()
	return p.PC.Close()
}

// dataError reports a frame from the peer that could not be read.
func (p *Peer) dataError(err error) {
	p.s.log.Warn("telemed client: bad data channel frame", "peer", p.ID, "err", err)
	if f := p.s.cfg.OnDataError; f != nil {
		f(p, err)
	}
}

// newID returns 16 random characters of the ids' alphabet.
func newID() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
	b := make([]byte, 16)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[b[i]&63]
	}
	return string(b)
}

// validID reports whether id is 1-64 characters of A-Z a-z 0-9 _ -.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// channel is what a transfer needs of its data channel (an interface so that tests can feed it frames).
type channel interface {
	Send(data []byte) error
	SendText(text string) error
	Close() error
	BufferedAmount() uint64
}

// sendJSON sends v as one text message.
func sendJSON(dc channel, v any) error {
	s, err := encodeJSON(v)
	if err != nil {
		return err
	}
	return dc.SendText(s)
}

// encodeJSON encodes v without escaping <, > and &, which would make text up to six times longer.
func encodeJSON(v any) (string, error) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", fmt.Errorf("encode %T: %w", v, err)
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// errorFrame is an error sent to the peer, on chat or file channels.
type errorFrame struct {
	Type    string       `json:"type"`
	Code    errcode.Code `json:"code"`
	Message string       `json:"message"`
}

// frameRules are what a channel's text frames must be, and how their errors name them.
type frameRules struct {
	limit  int    // bytes
	binary string // the error for a binary frame
	size   string // how the error for a frame over limit names it; "a frame" if empty
	kind   string // the frame's kind in the error for one that is not JSON ("chat")
}

// decodeFrame reads a text frame's JSON into v, refusing binary frames and frames over the limit.
func decodeFrame(msg webrtc.DataChannelMessage, v any, r frameRules) error {
	if !msg.IsString {
		return errors.New(r.binary)
	}
	if len(msg.Data) > r.limit {
		size := r.size
		if size == "" {
			size = "a frame"
		}
		return fmt.Errorf("%s of %d bytes, over %d", size, len(msg.Data), r.limit)
	}
	if err := json.Unmarshal(msg.Data, v); err != nil {
		return fmt.Errorf("not the JSON of a %s frame", r.kind)
	}
	return nil
}
