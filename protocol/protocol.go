// Package protocol is the wire format of telemed's signaling protocol (docs/signaling.md): the
// messages and their validation; the error codes are package errcode's. The server and the Go
// client both use it, and so may any program that speaks the protocol.
package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/telemed/telemed/errcode"
)

// ProtocolVersion is the version of the signaling protocol this package speaks.
const ProtocolVersion = 1

// Size limits of the protocol.
const (
	MaxMessageSize   = 64 << 10 // larger messages get too_large and are dropped
	MaxFrameSize     = 1 << 20  // larger frames close the connection (1009)
	MaxSDPSize       = 60 << 10
	MaxCandidateSize = 1024
	MaxNameLength    = 80
)

// Message types.
const (
	TypeJoin       = "join"
	TypeAdmit      = "admit"
	TypeDecline    = "decline"
	TypeOffer      = "offer"
	TypeAnswer     = "answer"
	TypeCandidate  = "candidate"
	TypeLeave      = "leave"
	TypePing       = "ping"
	TypePong       = "pong"
	TypeWelcome    = "welcome"
	TypeLobby      = "lobby"
	TypeAdmitted   = "admitted"
	TypeDeclined   = "declined"
	TypePeerJoined = "peer_joined"
	TypePeerLeft   = "peer_left"
	TypeError      = "error"
	// TypeAlert tells providers in a consultation that a reading of its patient crossed a threshold.
	TypeAlert = "alert"
	// TypeRemove (from a provider or clinician) takes a person out of the consultation; TypeRemoved
	// tells that person, just before the server closes their socket.
	TypeRemove  = "remove"
	TypeRemoved = "removed"
	// TypeMedia carries a participant's media state: to the server from the participant, and from the
	// server to the others with the peer's id.
	TypeMedia = "media"
	// TypeAllowShare (from a provider or clinician) lets a patient or guest share a screen, or takes
	// it back; TypeShareAllowed tells them.
	TypeAllowShare   = "allow_share"
	TypeShareAllowed = "share_allowed"
)

// Candidate is a trickled ICE candidate, RTCIceCandidateInit in snake_case.
type Candidate struct {
	Candidate        string  `json:"candidate"`
	SDPMid           *string `json:"sdp_mid,omitempty"`
	SDPMLineIndex    *uint16 `json:"sdp_mline_index,omitempty"`
	UsernameFragment *string `json:"username_fragment,omitempty"`
}

// Message is every message of the protocol, in either direction; which fields are set depends on Type.
type Message struct {
	Type string `json:"type"`
	ID   *int64 `json:"id,omitempty"`

	// join
	Version      int    `json:"version,omitempty"`
	Consultation string `json:"consultation,omitempty"`
	Token        string `json:"token,omitempty"`
	Name         string `json:"name,omitempty"`
	Resume       string `json:"resume,omitempty"`
	LastSeq      uint64 `json:"last_seq,omitempty"` // with resume: the last seq received

	// admit, decline, remove, allow_share
	Peer string `json:"peer,omitempty"`
	// allow_share
	Allowed *bool `json:"allowed,omitempty"`
	// media
	Audio  *bool `json:"audio,omitempty"`
	Video  *bool `json:"video,omitempty"`
	Screen *bool `json:"screen,omitempty"`

	// offer, answer, candidate
	To        string     `json:"to,omitempty"`
	From      string     `json:"from,omitempty"`
	SDP       string     `json:"sdp,omitempty"`
	Candidate *Candidate `json:"candidate,omitempty"`
}

// Error is a protocol error: what goes into an "error" message.
type Error struct {
	Code    errcode.Code
	Message string
	RefID   *int64
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

func protoErr(code errcode.Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Decode parses and validates one message from a client. Every message a client sends goes through it,
// so it accepts nothing the rest of the server would have to second-guess. When the JSON parses but a
// field is wrong, the returned Message still carries what was read (its Type, say) beside the error.
func Decode(data []byte) (Message, *Error) {
	if len(data) > MaxMessageSize {
		return Message{}, protoErr(errcode.TooLarge, "message is %d bytes; the limit is %d", len(data), MaxMessageSize)
	}
	if !utf8.Valid(data) {
		return Message{}, protoErr(errcode.BadJSON, "message is not UTF-8 text")
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return Message{}, protoErr(errcode.BadJSON, "message must be a JSON object")
	}
	var m Message
	if err := json.Unmarshal(trimmed, &m); err != nil {
		// A type mismatch in a known field is a bad field; anything else is bad JSON.
		if te, ok := err.(*json.UnmarshalTypeError); ok {
			e := protoErr(errcode.BadField, "field %q has the wrong type", te.Field)
			typ, id := peek(trimmed)
			e.RefID = id
			return Message{Type: typ}, e
		}
		return Message{}, protoErr(errcode.BadJSON, "message is not valid JSON")
	}
	if err := m.validate(); err != nil {
		err.RefID = m.ID
		return m, err
	}
	return m, nil
}

// peek reads the type and id of a message whose other fields did not decode, so that the error can
// refer to it and a bad join can be told from other bad input.
func peek(data []byte) (string, *int64) {
	var v struct {
		Type any `json:"type"`
		ID   any `json:"id"`
	}
	if json.Unmarshal(data, &v) != nil {
		return "", nil
	}
	typ, _ := v.Type.(string)
	if len(typ) > 32 {
		typ = ""
	}
	var id *int64
	if f, ok := v.ID.(float64); ok && f == float64(int64(f)) {
		n := int64(f)
		id = &n
	}
	return typ, id
}

func (m *Message) validate() *Error {
	switch m.Type {
	case TypeJoin:
		if m.Version != ProtocolVersion {
			return protoErr(errcode.UnsupportedVersion, "this server speaks protocol version %d", ProtocolVersion)
		}
		if !validID(m.Consultation) {
			return protoErr(errcode.BadField, "join needs the consultation id from the link")
		}
		if m.Token == "" || len(m.Token) > 512 {
			return protoErr(errcode.BadField, "join needs the token from the link")
		}
		m.Name = strings.TrimSpace(m.Name)
		if n := utf8.RuneCountInString(m.Name); n > MaxNameLength || strings.ContainsFunc(m.Name, isControl) {
			return protoErr(errcode.BadField, "name must be at most %d characters of text", MaxNameLength)
		}
		if len(m.Resume) > 128 {
			return protoErr(errcode.BadField, "resume is too long")
		}
	case TypeAdmit, TypeDecline:
		if !validID(m.Peer) {
			return protoErr(errcode.BadField, "%s needs the peer id of someone waiting", m.Type)
		}
	case TypeRemove:
		if !validID(m.Peer) {
			return protoErr(errcode.BadField, "remove needs the peer id of the person to remove")
		}
	case TypeAllowShare:
		if !validID(m.Peer) || m.Allowed == nil {
			return protoErr(errcode.BadField, "allow_share needs \"peer\" and \"allowed\" (true or false)")
		}
	case TypeMedia:
		if m.Audio == nil || m.Video == nil || m.Screen == nil {
			return protoErr(errcode.BadField, "media needs \"audio\", \"video\" and \"screen\", each true or false")
		}
	case TypeOffer, TypeAnswer:
		if !validID(m.To) {
			return protoErr(errcode.BadField, "%s needs the peer id in \"to\"", m.Type)
		}
		if !strings.HasPrefix(m.SDP, "v=0") || len(m.SDP) > MaxSDPSize {
			return protoErr(errcode.BadField, "%s needs an SDP session description in \"sdp\"", m.Type)
		}
	case TypeCandidate:
		if !validID(m.To) {
			return protoErr(errcode.BadField, "candidate needs the peer id in \"to\"")
		}
		c := m.Candidate
		if c == nil {
			return protoErr(errcode.BadField, "candidate needs a \"candidate\" object")
		}
		if len(c.Candidate) > MaxCandidateSize || (c.Candidate != "" && !strings.HasPrefix(c.Candidate, "candidate:")) {
			return protoErr(errcode.BadField, "candidate.candidate must be empty or an ICE candidate line")
		}
		if c.SDPMid == nil && c.SDPMLineIndex == nil {
			return protoErr(errcode.BadField, "candidate needs sdp_mid or sdp_mline_index")
		}
		if (c.SDPMid != nil && len(*c.SDPMid) > 64) || (c.UsernameFragment != nil && len(*c.UsernameFragment) > 256) {
			return protoErr(errcode.BadField, "candidate fields are too long")
		}
	case TypeLeave, TypePing:
	case "":
		return protoErr(errcode.UnknownType, "message has no \"type\"")
	default:
		t := m.Type
		if len(t) > 32 {
			t = t[:32]
		}
		return protoErr(errcode.UnknownType, "unknown message type %q", t)
	}
	return nil
}

// validID accepts the identifiers telemed hands out: short, URL-safe.
func validID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
