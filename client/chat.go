package client

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/pion/webrtc/v4"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/consult"
)

// Chat limits (docs/datachannels.md).
const (
	MaxChatText  = 4000     // characters (code points) after trimming
	maxChatFrame = 16 << 10 // bytes of one chat frame
)

// ErrChatNotOpen is returned by SendChat before the chat channel to the peer is open (WaitChat waits
// for it), and by Session.SendChat when nobody is in the call.
var ErrChatNotOpen = errors.New("telemed: the chat channel is not open yet")

// ChatMessage is one chat message, sent or received.
type ChatMessage struct {
	ID   string
	Text string
	// SentAt is the sender's clock.
	SentAt time.Time
}

type chatFrame struct {
	Type    string       `json:"type"`
	ID      string       `json:"id,omitempty"`
	Text    string       `json:"text,omitempty"`
	SentAt  *int64       `json:"sent_at,omitempty"`
	Code    errcode.Code `json:"code,omitempty"`
	Message string       `json:"message,omitempty"`
}

// SendChat sends a chat message to the peer. Config.OnChatDelivered reports its receipt.
func (p *Peer) SendChat(text string) (ChatMessage, error) {
	m, frame, err := newChat(text)
	if err != nil {
		return ChatMessage{}, err
	}
	if err := p.sendChatFrame(frame); err != nil {
		return ChatMessage{}, err
	}
	return m, nil
}

// SendChat sends one chat message to every person in the call, each over its own peer connection
// (devices read no chat and get none). Config.OnChatDelivered reports each receipt, all with the
// message's id. When some of them could not be reached (their chat channel is not open yet:
// ErrChatNotOpen) it returns the message and an error naming them: the others have it. When nobody
// was reached it returns only an error, ErrChatNotOpen if nobody is in the call.
func (s *Session) SendChat(text string) (ChatMessage, error) {
	m, frame, err := newChat(text)
	if err != nil {
		return ChatMessage{}, err
	}
	var errs []error
	sent := 0
	for _, p := range s.Peers() {
		if p.role() == roleDevice {
			continue
		}
		if err := p.sendChatFrame(frame); err != nil {
			errs = append(errs, fmt.Errorf("to %s: %w", p.who(), err))
			continue
		}
		sent++
	}
	switch {
	case sent > 0:
		return m, errors.Join(errs...)
	case len(errs) > 0:
		return ChatMessage{}, errors.Join(errs...)
	default:
		return ChatMessage{}, ErrChatNotOpen
	}
}

// newChat makes a chat message of text and its frame.
func newChat(text string) (ChatMessage, string, error) {
	text = consult.TrimChatText(text)
	if err := checkChatText(text); err != nil {
		return ChatMessage{}, "", err
	}
	ms := time.Now().UnixMilli()
	m := ChatMessage{ID: newID(), Text: text, SentAt: time.UnixMilli(ms)}
	frame, err := encodeJSON(chatFrame{Type: "msg", ID: m.ID, Text: text, SentAt: &ms})
	if err != nil {
		return ChatMessage{}, "", fmt.Errorf("send chat: %w", err)
	}
	if len(frame) > maxChatFrame {
		// Escaped characters can make 4000 characters longer than a frame may be.
		return ChatMessage{}, "", fmt.Errorf("send chat: the message is %d bytes as a frame, over %d", len(frame), maxChatFrame)
	}
	return m, frame, nil
}

// sendChatFrame sends a chat frame on the newest open chat channel to the peer.
func (p *Peer) sendChatFrame(frame string) error {
	dc := p.chatChannel()
	if dc == nil {
		return ErrChatNotOpen
	}
	if err := dc.SendText(frame); err != nil {
		return fmt.Errorf("send chat: %w", err)
	}
	return nil
}

func checkChatText(text string) error {
	if text == "" {
		return errors.New("text is empty")
	}
	if n := utf8.RuneCountInString(text); n > MaxChatText {
		return fmt.Errorf("text is %d characters, over %d", n, MaxChatText)
	}
	if !utf8.ValidString(text) {
		return errors.New("text is not valid UTF-8")
	}
	return nil
}

// chatChannel returns the newest open chat channel, or nil.
func (p *Peer) chatChannel() *webrtc.DataChannel {
	p.dcs.mu.Lock()
	defer p.dcs.mu.Unlock()
	for i := len(p.dcs.chat) - 1; i >= 0; i-- {
		if p.dcs.chat[i].ReadyState() == webrtc.DataChannelStateOpen {
			return p.dcs.chat[i]
		}
	}
	return nil
}

// WaitChat waits until a chat channel to the peer is open, so that SendChat can send. It returns
// ctx's error if ctx ends first, and ErrClosed once the peer connection is closed.
func (p *Peer) WaitChat(ctx context.Context) error {
	for {
		p.dcs.mu.Lock()
		changed, closed := p.dcs.chatChangedLocked(), p.dcs.closed
		p.dcs.mu.Unlock()
		if p.chatChannel() != nil {
			return nil
		}
		if closed {
			return ErrClosed
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for chat with %s: %w", p.ID, ctx.Err())
		}
	}
}

func (p *Peer) attachChat(dc *webrtc.DataChannel) {
	p.dcs.mu.Lock()
	p.dcs.chat = append(p.dcs.chat, dc)
	p.dcs.mu.Unlock()
	dc.OnOpen(p.dcs.chatChange)
	dc.OnClose(func() {
		p.dcs.mu.Lock()
		for i, c := range p.dcs.chat {
			if c == dc {
				p.dcs.chat = append(p.dcs.chat[:i], p.dcs.chat[i+1:]...)
				break
			}
		}
		p.dcs.mu.Unlock()
		p.dcs.chatChange()
	})
	dc.OnMessage(func(msg webrtc.DataChannelMessage) { p.onChatFrame(dc, msg) })
}

func (p *Peer) onChatFrame(dc *webrtc.DataChannel, msg webrtc.DataChannelMessage) {
	f, err := parseChatFrame(msg)
	if err != nil {
		p.dataError(fmt.Errorf("chat message from %s: %w", p.ID, err))
		if f.Type != "error" {
			sendJSON(dc, errorFrame{Type: "error", Code: errcode.BadFrame, Message: "chat message: " + err.Error()})
		}
		return
	}
	switch f.Type {
	case "msg":
		cb := p.s.cfg.OnChat
		if cb == nil {
			return // nobody reads it here (a device agent): no receipt says it was delivered
		}
		cb(p, ChatMessage{ID: f.ID, Text: consult.TrimChatText(f.Text), SentAt: time.UnixMilli(*f.SentAt)})
		if err := sendJSON(dc, chatFrame{Type: "receipt", ID: f.ID}); err != nil {
			p.s.log.Debug("telemed client: send receipt", "err", err)
		}
	case "receipt":
		if cb := p.s.cfg.OnChatDelivered; cb != nil {
			cb(p, f.ID)
		}
	case "error":
		p.dataError(fmt.Errorf("the other side could not read a chat message: %s (%s)", f.Message, f.Code))
	}
}

// parseChatFrame checks a chat frame as docs/datachannels.md says. The frame's type is returned even
// with an error, so that errors are never answered.
func parseChatFrame(msg webrtc.DataChannelMessage) (chatFrame, error) {
	var f chatFrame
	if err := decodeFrame(msg, &f, frameRules{limit: maxChatFrame, binary: "a binary frame on the chat channel", kind: "chat"}); err != nil {
		return chatFrame{}, err
	}
	switch f.Type {
	case "msg":
		if !validID(f.ID) {
			return f, errors.New("id is missing or invalid")
		}
		if err := checkChatText(consult.TrimChatText(f.Text)); err != nil {
			return f, err
		}
		if f.SentAt == nil || *f.SentAt <= 0 {
			return f, errors.New("sent_at is missing")
		}
	case "receipt":
		if !validID(f.ID) {
			return f, errors.New("id is missing or invalid")
		}
	case "error":
	case "":
		return f, errors.New("type is missing")
	default:
		return f, fmt.Errorf("unknown type %q", f.Type)
	}
	return f, nil
}
