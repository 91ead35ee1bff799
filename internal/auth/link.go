package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/telemed/telemed/internal/consult"
)

// LinkSigner signs and verifies the tokens in consultation links. A token is
// "<consultation>.<role>.<expiry-unix>.<signature>", the signature an HMAC-SHA256 over the rest, so it
// cannot be moved to another consultation, given another role, or extended. A link issued to one
// holder (a device) names it: "<consultation>.<role>.<expiry-unix>.<subject>.<signature>".
type LinkSigner struct {
	secret []byte
}

// NewLinkSigner returns a signer keyed by secret, which must be at least 32 bytes.
func NewLinkSigner(secret []byte) (*LinkSigner, error) {
	if len(secret) < 32 {
		return nil, fmt.Errorf("link secret must be at least 32 bytes, got %d", len(secret))
	}
	return &LinkSigner{secret: secret}, nil
}

// LinkClaims is what a valid token says.
type LinkClaims struct {
	ConsultationID string
	Role           consult.Role
	ExpiresAt      time.Time
	// Subject names the one holder the link was issued to (a device's id), or is "". It cannot
	// contain a dot.
	Subject string
}

// Sign returns the token for claims.
func (s *LinkSigner) Sign(c LinkClaims) string {
	payload := c.ConsultationID + "." + string(c.Role) + "." + strconv.FormatInt(c.ExpiresAt.Unix(), 10)
	if c.Subject != "" {
		payload += "." + c.Subject
	}
	return payload + "." + s.mac(payload)
}

func (s *LinkSigner) mac(payload string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte("telemed-link-v1\x00"))
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Verify checks token for the consultation consultationID at now. It returns consult.ErrBadToken for a
// malformed or tampered token, consult.ErrWrongConsultation for a token of another consultation, and
// consult.ErrLinkExpired (with the claims) for an expired one.
func (s *LinkSigner) Verify(consultationID, token string, now time.Time) (LinkClaims, error) {
	if len(token) > 512 {
		return LinkClaims{}, consult.ErrBadToken
	}
	parts := strings.Split(token, ".")
	var subject string
	switch len(parts) {
	case 4:
	case 5:
		subject = parts[3]
		if subject == "" {
			return LinkClaims{}, consult.ErrBadToken
		}
		parts = []string{parts[0], parts[1], parts[2], parts[4]}
	default:
		return LinkClaims{}, consult.ErrBadToken
	}
	role := consult.Role(parts[1])
	exp, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || !role.Valid() {
		return LinkClaims{}, consult.ErrBadToken
	}
	if parts[0] != consultationID {
		return LinkClaims{}, consult.ErrWrongConsultation
	}
	payload := parts[0] + "." + parts[1] + "." + parts[2]
	if subject != "" {
		payload += "." + subject
	}
	if !hmac.Equal([]byte(s.mac(payload)), []byte(parts[3])) {
		return LinkClaims{}, consult.ErrBadToken
	}
	claims := LinkClaims{ConsultationID: parts[0], Role: role, ExpiresAt: time.Unix(exp, 0).UTC(), Subject: subject}
	if !now.Before(claims.ExpiresAt) {
		return claims, consult.ErrLinkExpired
	}
	return claims, nil
}
