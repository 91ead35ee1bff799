package protocol

import (
	"encoding/json"
	"time"

	"github.com/telemed/telemed/errcode"
)

// ICEServer is one entry of RTCConfiguration.iceServers.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Peer is another admitted member, as a client sees it. Polite tells the receiving client whether it is
// the polite side towards this peer in perfect negotiation.
type Peer struct {
	ID     string `json:"id"`
	Role   string `json:"role"`
	Name   string `json:"name"`
	Polite bool   `json:"polite"`
	// Media is the peer's media state as it last said (MediaState); a peer that has said nothing
	// yet is taken to have its microphone and camera on.
	Media MediaState `json:"media"`
	// CanShare tells whether the peer may share a screen.
	CanShare bool `json:"can_share"`
}

// MediaState is what a participant sends: microphone on, camera on, sharing a screen.
type MediaState struct {
	Audio  bool `json:"audio"`
	Video  bool `json:"video"`
	Screen bool `json:"screen"`
}

// Media tells the others in a call that a peer's media state changed.
type Media struct {
	Type string `json:"type"`
	Peer string `json:"peer"`
	MediaState
}

// ShareAllowed tells a patient or guest that they may share a screen, or no longer may.
type ShareAllowed struct {
	Type    string `json:"type"`
	Allowed bool   `json:"allowed"`
}

// Waiting is someone in the waiting room, as a provider sees them.
type Waiting struct {
	ID    string    `json:"id"`
	Role  string    `json:"role"`
	Name  string    `json:"name"`
	Since time.Time `json:"since"`
}

// You is the receiving participant.
type You struct {
	ID   string `json:"id"`
	Role string `json:"role"`
	Name string `json:"name"`
	// CanShare tells whether you may share a screen (providers and clinicians always may).
	CanShare bool `json:"can_share"`
}

// ConsultationInfo is what a participant learns about the consultation.
type ConsultationInfo struct {
	ID           string `json:"id"`
	Title        string `json:"title"`
	ProviderName string `json:"provider_name"`
	// MaxParticipants is how many people the call holds (devices are not counted).
	MaxParticipants int `json:"max_participants"`
}

// Participant states in a welcome.
const (
	StateWaiting  = "waiting"
	StateAdmitted = "admitted"
)

// Reasons in peer_left.
const (
	ReasonLeft         = "left"
	ReasonDisconnected = "disconnected"
	ReasonDeclined     = "declined"
	ReasonRemoved      = "removed"
)

// Welcome answers a successful join.
type Welcome struct {
	Type         string           `json:"type"`
	Version      int              `json:"version"`
	You          You              `json:"you"`
	State        string           `json:"state"`
	Consultation ConsultationInfo `json:"consultation"`
	Peers        []Peer           `json:"peers"`
	Waiting      []Waiting        `json:"waiting"`
	Resume       string           `json:"resume"`
	ICEServers   []ICEServer      `json:"ice_servers"`
	// ICEPolicy is RTCConfiguration.iceTransportPolicy for every peer connection: "all" or "relay".
	ICEPolicy string `json:"ice_transport_policy"`
}

// Lobby is the whole waiting room, sent to providers when it changes.
type Lobby struct {
	Type    string    `json:"type"`
	Waiting []Waiting `json:"waiting"`
}

// Admitted tells a patient they are in the call, with whom.
type Admitted struct {
	Type  string `json:"type"`
	Peers []Peer `json:"peers"`
}

// PeerJoined tells the members of a call that someone was admitted.
type PeerJoined struct {
	Type string `json:"type"`
	Peer Peer   `json:"peer"`
}

// PeerLeft tells the members of a call that someone left.
type PeerLeft struct {
	Type   string `json:"type"`
	Peer   string `json:"peer"`
	Reason string `json:"reason"`
}

// ErrorMessage is the "error" message.
type ErrorMessage struct {
	Type    string       `json:"type"`
	Code    errcode.Code `json:"code"`
	Message string       `json:"message"`
	RefID   *int64       `json:"ref_id,omitempty"`
}

// Envelope reads only the type and sequence number of a message, so a client can pick the struct to
// decode it into and remember how far it has read.
type Envelope struct {
	Type string `json:"type"`
	Seq  uint64 `json:"seq,omitempty"`
}

// Alert is sent to the providers in a consultation when a reading of its patient crosses one of the
// patient's thresholds. Alert is the alert as the HTTP API shows it (docs/monitoring.md).
type Alert struct {
	Type  string          `json:"type"`
	Alert json.RawMessage `json:"alert"`
}
