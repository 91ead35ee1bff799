// Package errcode is every error code telemed gives a program, in one place: those of the HTTP API
// (docs/api.md), of the signaling protocol (docs/signaling.md), of a refused reading in an upload
// (docs/monitoring.md) and of the data channels' file transfers (docs/datachannels.md). A code is for
// programs and never changes; the message beside it is for people.
//
// A code is a typed constant, so a misspelt one does not compile. The lists API, Signaling,
// Rejection and Transfer say which codes each surface may send; tests hold them against the docs,
// and the HTTP edge against its status table.
package errcode

import "fmt"

// Code is an error code as it appears on the wire ("bad_field").
type Code string

// String returns the code as it is sent.
func (c Code) String() string { return string(c) }

// The codes, by the surfaces that send them.
const (
	// Codes shared by several surfaces.

	// BadField: a field is missing, of the wrong type, or out of range; the message names it.
	BadField Code = "bad_field"
	// BadJSON: not JSON of the expected shape (HTTP), or not a JSON object of UTF-8 text (signaling).
	BadJSON Code = "bad_json"
	// TooLarge: a transcript or batch body, a batch, a signaling message or a file over its limit.
	TooLarge Code = "too_large"
	// BadToken: a link, setup or enrollment token that is malformed, tampered with, used or for
	// another role.
	BadToken Code = "bad_token"
	// Busy: the server (or a receiver) has too much under way; try again in a moment.
	Busy Code = "busy"
	// Internal: a fault of the server; details are in its log, never in the message.
	Internal Code = "internal"
	// Unavailable: a service the server depends on (its database, Redis) does not answer; try
	// again in a moment. Not a fault of the request, nor of the server's code.
	Unavailable Code = "unavailable"

	// Codes of the HTTP API only.

	// WeakPassword: a new password is too short.
	WeakPassword Code = "weak_password"
	// BadCredentials: the email or password of a sign-in is wrong.
	BadCredentials Code = "bad_credentials"
	// Unauthenticated: no session or token, or one that is unknown, expired or revoked.
	Unauthenticated Code = "unauthenticated"
	// NotFound: no such record, or one of another provider.
	NotFound Code = "not_found"
	// Conflict: it exists already (setup done, an email taken, a batch id used with other readings).
	Conflict Code = "conflict"
	// BadOrigin: a browser request from another site, or a cookie-authenticated write that is not JSON.
	BadOrigin Code = "bad_origin"
	// MethodNotAllowed: the endpoint exists but not with this method; Allow lists those it takes.
	MethodNotAllowed Code = "method_not_allowed"

	// Codes of the signaling protocol only.

	UnknownType        Code = "unknown_type"        // a message's type is missing or unknown
	NotJoined          Code = "not_joined"          // a message other than join or ping before join
	AlreadyJoined      Code = "already_joined"      // a second join
	UnsupportedVersion Code = "unsupported_version" // the join's protocol version is not spoken
	LinkExpired        Code = "link_expired"        // the link has expired
	WrongConsultation  Code = "wrong_consultation"  // the link is for another consultation, or none
	Ended              Code = "consultation_ended"  // the consultation was ended (also HTTP: inviting into it)
	Forbidden          Code = "forbidden"           // the role may not do this (a patient admitting)
	NotAdmitted        Code = "not_admitted"        // media negotiation from someone still waiting
	UnknownPeer        Code = "unknown_peer"        // the peer named is not in this consultation
	RoomFull           Code = "room_full"           // no place left in the call
	WaitingRoomFull    Code = "waiting_room_full"   // no place left in the waiting room
	BadResume          Code = "bad_resume"          // the resume secret is unknown or expired
	RateLimited        Code = "rate_limited"        // over the message rate limit

	// Codes of a reading refused within an upload.

	UnknownCode Code = "unknown_code" // not a signal telemed knows
	BadUnit     Code = "bad_unit"     // not the signal's UCUM unit
	OutOfRange  Code = "out_of_range" // not physiologically possible, or in the future
	BadReading  Code = "bad_reading"  // missing or contradictory fields

	// Codes of a file transfer over a data channel (TooLarge and Busy too).

	BadFrame     Code = "bad_frame"     // a frame that cannot be read
	OutOfOrder   Code = "out_of_order"  // a chunk not where the previous one ended
	SizeMismatch Code = "size_mismatch" // more or less data than offered
	HashMismatch Code = "hash_mismatch" // the SHA-256 of what arrived differs
	WriteFailed  Code = "write_failed"  // the receiver could not store the data
	// Cancelled and Interrupted are reported by the Go client, never sent: either side cancelled,
	// or the channel closed before the end.
	Cancelled   Code = "cancelled"
	Interrupted Code = "interrupted"
)

// API returns the codes the HTTP API answers with (docs/api.md).
func API() []Code {
	return []Code{BadField, BadJSON, WeakPassword, BadCredentials, Unauthenticated, BadToken, BadOrigin,
		NotFound, MethodNotAllowed, Conflict, Ended, TooLarge, Busy, Unavailable, Internal}
}

// Signaling returns the codes of the signaling protocol's error message (docs/signaling.md).
func Signaling() []Code {
	return []Code{TooLarge, BadJSON, UnknownType, BadField, NotJoined, AlreadyJoined, UnsupportedVersion,
		BadToken, LinkExpired, WrongConsultation, Ended, Forbidden, NotAdmitted, UnknownPeer, RoomFull,
		WaitingRoomFull, BadResume, RateLimited, Unavailable, Internal}
}

// Rejection returns the codes of a refused reading in an upload's "rejected" list (docs/monitoring.md).
func Rejection() []Code { return []Code{UnknownCode, BadUnit, OutOfRange, BadReading} }

// Transfer returns the codes of a file transfer's error frame (docs/datachannels.md).
func Transfer() []Code {
	return []Code{BadFrame, OutOfOrder, SizeMismatch, HashMismatch, TooLarge, Busy, WriteFailed}
}

// Error is a failure a person can act on: Code is for programs, Message for people. Any other error
// is an internal fault, logged and shown only as Internal.
type Error struct {
	Code    Code
	Message string
}

// Error returns the message for people.
func (e *Error) Error() string { return e.Message }

// New returns an *Error with a message for people.
func New(code Code, message string) *Error { return &Error{Code: code, Message: message} }

// Errorf returns an *Error whose message is formatted as fmt.Sprintf does.
func Errorf(code Code, format string, args ...any) error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Quote quotes a value sent by a client for an error message, shortened to 40 characters if
// longer: errors repeat what was sent, not all of it.
func Quote(v string) string {
	const n = 40
	if r := []rune(v); len(r) > n {
		return fmt.Sprintf("%q…", string(r[:n]))
	}
	return fmt.Sprintf("%q", v)
}
