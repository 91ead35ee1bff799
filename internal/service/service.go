// Package service is what telemed does, independent of how it is asked: create provider accounts and
// consultations, sign people in, and decide who may join which consultation. The command line, the
// HTTP API and the signaling server all go through it.
package service

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"runtime"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/auth"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/store"
)

// Defaults and limits of consultations and sessions.
const (
	DefaultLinkTTL = 24 * time.Hour
	MinLinkTTL     = 5 * time.Minute
	MaxLinkTTL     = 30 * 24 * time.Hour
	SessionTTL     = 12 * time.Hour
	MaxTitleLength = 200
)

const (
	settingLinkSecret = "link_secret"
	settingSetupToken = "setup_token"
)

// Options configure a Service.
type Options struct {
	Store store.Store
	// BaseURL is the public URL that links start with, without a trailing slash.
	BaseURL string
	// Now returns the current time; time.Now if nil.
	Now func() time.Time
	// PasswordParams are argon2id's costs; auth.DefaultPasswordParams if zero.
	PasswordParams auth.PasswordParams
	// Logger receives audit failures; slog.Default() if nil.
	Logger *slog.Logger
}

// Service carries out telemed's use cases.
type Service struct {
	// hashing bounds the argon2id computations under way: each takes 64 MiB, so unbounded sign-in
	// attempts would be a way to exhaust the server's memory.
	hashing chan struct{}
	store   store.Store
	links   *auth.LinkSigner
	baseURL string
	now     func() time.Time
	params  auth.PasswordParams
	log     *slog.Logger
	events  broker
	// patientLocks serialise the alert states of one patient's uploads.
	patientLocks stripedLocks
	// enrollFailures is the allowance of failed device enrollments: one a second, in bursts of
	// EnrollFailureBurst.
	enrollFailures *rate.Limiter
}

// EnrollFailureBurst is how many failed device enrollments in a row the server allows before it
// makes every attempt wait (one more a second). With codes of 31^8, that leaves a guesser a chance
// of about one in a million a day for each code outstanding.
const EnrollFailureBurst = 30

// New returns a Service, creating the link-signing secret in the store on first use.
func New(ctx context.Context, o Options) (*Service, error) {
	if o.Store == nil {
		return nil, errors.New("service: Store is required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.PasswordParams == (auth.PasswordParams{}) {
		o.PasswordParams = auth.DefaultPasswordParams
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	secret, err := o.Store.EnsureSetting(ctx, settingLinkSecret, randomHex(32))
	if err != nil {
		return nil, fmt.Errorf("load link secret: %w", err)
	}
	raw, err := hex.DecodeString(secret)
	if err != nil {
		return nil, fmt.Errorf("load link secret: %w", err)
	}
	links, err := auth.NewLinkSigner(raw)
	if err != nil {
		return nil, err
	}
	return &Service{store: o.Store, links: links, baseURL: strings.TrimRight(o.BaseURL, "/"),
		now: o.Now, params: o.PasswordParams, log: o.Logger,
		hashing:        make(chan struct{}, max(2, runtime.NumCPU())),
		enrollFailures: rate.NewLimiter(rate.Every(time.Second), EnrollFailureBurst)}, nil
}

var errBusy = &errcode.Error{Code: errcode.Busy, Message: "too many sign-in attempts at once; try again in a moment"}

// withHashing runs f once a password-hashing slot is free, waiting a little for one.
func (s *Service) withHashing(ctx context.Context, f func()) error {
	t := time.NewTimer(3 * time.Second)
	defer t.Stop()
	select {
	case s.hashing <- struct{}{}:
	case <-t.C:
		return errBusy
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.hashing }()
	f()
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b)
}

// BaseURL is the public URL that links start with, without a trailing slash.
func (s *Service) BaseURL() string { return s.baseURL }

// Now returns the service's current time.
func (s *Service) Now() time.Time { return s.now() }

// Audit appends to the audit trail. A failure is logged, not returned: the audit must not stop a call
// that is under way, but an operator must see that a line is missing.
func (s *Service) Audit(ctx context.Context, e consult.AuditEvent) {
	if e.At.IsZero() {
		e.At = s.now()
	}
	if err := s.store.AppendAudit(ctx, e); err != nil {
		s.log.Error("audit write failed", "action", e.Action, "consultation", e.ConsultationID, "err", err)
	}
}

// AddProvider creates a provider account.
func (s *Service) AddProvider(ctx context.Context, email, name, password string) (consult.Provider, error) {
	email = strings.TrimSpace(email)
	name = strings.TrimSpace(name)
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != email || len(email) > 254 {
		return consult.Provider{}, errcode.Errorf(errcode.BadField, "%q is not an email address", email)
	}
	if name == "" || utf8.RuneCountInString(name) > 80 {
		return consult.Provider{}, errcode.Errorf(errcode.BadField, "name must be 1 to 80 characters")
	}
	var hash string
	if herr := s.withHashing(ctx, func() { hash, err = auth.HashPassword(password, s.params) }); herr != nil {
		return consult.Provider{}, herr
	}
	if errors.Is(err, auth.ErrWeakPassword) {
		return consult.Provider{}, errcode.Errorf(errcode.WeakPassword, "%s", err.Error())
	}
	if err != nil {
		return consult.Provider{}, err
	}
	p := consult.Provider{ID: auth.NewID("u_"), Email: email, Name: name, PasswordHash: hash, CreatedAt: s.now().UTC()}
	if err := s.store.CreateProvider(ctx, p); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return consult.Provider{}, errcode.Errorf(errcode.Conflict, "a provider with email %s already exists", email)
		}
		return consult.Provider{}, fmt.Errorf("add provider %s: %w", email, err)
	}
	return p, nil
}

// ProviderByEmail finds a provider account.
func (s *Service) ProviderByEmail(ctx context.Context, email string) (consult.Provider, error) {
	p, err := s.store.ProviderByEmail(ctx, strings.TrimSpace(email))
	if errors.Is(err, store.ErrNotFound) {
		return p, errcode.Errorf(errcode.NotFound, "no provider with email %s", email)
	}
	return p, err
}

// SetupToken returns the one-time token that lets the first provider account be created in the browser,
// or "" when a provider already exists.
func (s *Service) SetupToken(ctx context.Context) (string, error) {
	n, err := s.store.CountProviders(ctx)
	if err != nil || n > 0 {
		return "", err
	}
	return s.store.EnsureSetting(ctx, settingSetupToken, randomHex(16))
}

// SetupNeeded reports whether no provider account exists yet.
func (s *Service) SetupNeeded(ctx context.Context) (bool, error) {
	n, err := s.store.CountProviders(ctx)
	return n == 0, err
}

// Setup creates the first provider account with the one-time setup token.
func (s *Service) Setup(ctx context.Context, token, email, name, password string) (consult.Provider, error) {
	want, err := s.store.Setting(ctx, settingSetupToken)
	if errors.Is(err, store.ErrNotFound) || (err == nil && (token == "" || subtle.ConstantTimeCompare([]byte(token), []byte(want)) != 1)) {
		return consult.Provider{}, errcode.Errorf(errcode.BadToken, "this setup link is not valid: run telemed serve and use the link it prints")
	}
	if err != nil {
		return consult.Provider{}, err
	}
	if n, err := s.store.CountProviders(ctx); err != nil || n > 0 {
		if err != nil {
			return consult.Provider{}, err
		}
		return consult.Provider{}, errcode.Errorf(errcode.Conflict, "setup is already done: sign in instead")
	}
	p, err := s.AddProvider(ctx, email, name, password)
	if err != nil {
		return p, err
	}
	if err := s.store.DeleteSetting(ctx, settingSetupToken); err != nil {
		s.log.Error("could not remove used setup token", "err", err)
	}
	return p, nil
}

var errBadCredentials = &errcode.Error{Code: errcode.BadCredentials, Message: "wrong email or password"}

// dummyHash keeps a sign-in with an unknown email as slow as one with a wrong password.
var dummyHash = sync.OnceValue(func() string {
	h, _ := auth.HashPassword("not-a-real-password-at-all", auth.DefaultPasswordParams)
	return h
})

// Login checks a provider's password and opens a session, returning its token.
func (s *Service) Login(ctx context.Context, email, password string) (string, consult.Provider, error) {
	p, err := s.store.ProviderByEmail(ctx, strings.TrimSpace(email))
	known := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", consult.Provider{}, err
	}
	hash := p.PasswordHash
	if !known {
		hash = dummyHash()
	}
	var ok bool
	if herr := s.withHashing(ctx, func() { ok, err = auth.VerifyPassword(hash, password) }); herr != nil {
		return "", consult.Provider{}, herr
	}
	if !known || err != nil || !ok {
		return "", consult.Provider{}, errBadCredentials
	}
	token, err := s.NewSession(ctx, p.ID)
	return token, p, err
}

// NewSession opens a browser session for a provider and returns its token.
func (s *Service) NewSession(ctx context.Context, providerID string) (string, error) {
	token, hash := auth.NewToken("")
	// Sign-ins are rare enough to sweep expired sessions on each one.
	if err := s.store.DeleteExpiredSessions(ctx, s.now()); err != nil {
		s.log.Warn("could not remove expired sessions", "err", err)
	}
	if err := s.store.CreateSession(ctx, hash, providerID, s.now().Add(SessionTTL)); err != nil {
		return "", fmt.Errorf("create session: %w", err)
	}
	return token, nil
}

// Logout ends a session.
func (s *Service) Logout(ctx context.Context, token string) error {
	return s.store.DeleteSession(ctx, auth.HashToken(token))
}

// SessionProvider returns the provider signed in with a session token.
func (s *Service) SessionProvider(ctx context.Context, token string) (consult.Provider, error) {
	return s.store.SessionProvider(ctx, auth.HashToken(token), s.now())
}

// CreateAPIToken issues an API token acting as the provider.
func (s *Service) CreateAPIToken(ctx context.Context, providerID, name string) (string, error) {
	token, hash := auth.NewToken("tm_")
	if err := s.store.CreateAPIToken(ctx, hash, providerID, name, s.now()); err != nil {
		return "", fmt.Errorf("create API token: %w", err)
	}
	return token, nil
}

// APITokenProvider returns the provider an API token acts as.
func (s *Service) APITokenProvider(ctx context.Context, token string) (consult.Provider, error) {
	return s.store.APITokenProvider(ctx, auth.HashToken(token))
}
