package consultations

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/telemed/telemed/internal/auth"
	"github.com/telemed/telemed/internal/consult"
)

const settingLinkSecret = "link_secret"

// SecretStore keeps the link-signing secret among the server's settings.
type SecretStore interface {
	EnsureSetting(ctx context.Context, key, value string) (string, error)
}

// Links signs and checks the links of consultations: a provider's, a patient's, a device's. Every
// node of a server signs with the same secret, kept in the store.
type Links struct {
	signer  *auth.LinkSigner
	baseURL string
}

// LoadLinks returns the links of a server whose public URL is baseURL, creating the signing secret in
// the store on first use.
func LoadLinks(ctx context.Context, st SecretStore, baseURL string) (*Links, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	secret, err := st.EnsureSetting(ctx, settingLinkSecret, hex.EncodeToString(raw))
	if err != nil {
		return nil, fmt.Errorf("load link secret: %w", err)
	}
	key, err := hex.DecodeString(secret)
	if err != nil {
		return nil, fmt.Errorf("load link secret: %w", err)
	}
	signer, err := auth.NewLinkSigner(key)
	if err != nil {
		return nil, err
	}
	return &Links{signer: signer, baseURL: strings.TrimRight(baseURL, "/")}, nil
}

// BaseURL is the public URL that links start with, without a trailing slash.
func (l *Links) BaseURL() string { return l.baseURL }

// URL is the link that opens consultation c in the given role, working until c expires.
func (l *Links) URL(c consult.Consultation, role consult.Role) string {
	return l.url(auth.LinkClaims{ConsultationID: c.ID, Role: role, ExpiresAt: c.ExpiresAt})
}

// DeviceURL is the link that joins consultation c as the device deviceID, working until expires (or
// until c does, if sooner).
func (l *Links) DeviceURL(c consult.Consultation, deviceID string, expires time.Time) string {
	if c.ExpiresAt.Before(expires) {
		expires = c.ExpiresAt
	}
	return l.url(auth.LinkClaims{ConsultationID: c.ID, Role: consult.RoleDevice, ExpiresAt: expires, Subject: deviceID})
}

func (l *Links) url(claims auth.LinkClaims) string {
	return l.baseURL + "/c/" + claims.ConsultationID + "#t=" + l.signer.Sign(claims)
}

// Verify checks a link token for a consultation at now, returning what it grants. Its errors are
// consult.ErrLinkExpired (with the claims), consult.ErrWrongConsultation and the other consult.Err*.
func (l *Links) Verify(consultationID, token string, now time.Time) (auth.LinkClaims, error) {
	return l.signer.Verify(consultationID, token, now)
}
