// Package accounts is who may act as a provider: provider accounts, their sign-in sessions and API
// tokens, and the one-time setup that creates the first account in the browser. It hashes passwords
// with argon2id, a bounded number at a time.
package accounts

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

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/auth"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/store"
)

// SessionTTL is how long a browser session lasts.
const SessionTTL = 12 * time.Hour

// MaxNameLength bounds a provider's name, in Unicode code points after trimming.
const MaxNameLength = 80

const settingSetupToken = "setup_token"

// Store is what accounts keeps: providers, sessions and tokens, and the setup token among the settings.
type Store interface {
	store.Accounts
	Setting(ctx context.Context, key string) (string, error)
	EnsureSetting(ctx context.Context, key, value string) (string, error)
	DeleteSetting(ctx context.Context, key string) error
}

// Options configure a Service.
type Options struct {
	Store Store
	// Now returns the current time; time.Now if nil.
	Now func() time.Time
	// PasswordParams are argon2id's costs; auth.DefaultPasswordParams if zero.
	PasswordParams auth.PasswordParams
	// Logger receives what an operator should know (a setup token that could not be removed);
	// slog.Default() if nil.
	Logger *slog.Logger
}

// Service carries out the accounts use cases.
type Service struct {
	// hashing bounds the argon2id computations under way: each takes 64 MiB, so unbounded sign-in
	// attempts would be a way to exhaust the server's memory.
	hashing chan struct{}
	store   Store
	now     func() time.Time
	params  auth.PasswordParams
	log     *slog.Logger
}

// New returns a Service.
func New(o Options) (*Service, error) {
	if o.Store == nil {
		return nil, errors.New("accounts: Store is required")
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
	return &Service{store: o.Store, now: o.Now, params: o.PasswordParams, log: o.Logger,
		hashing: make(chan struct{}, max(2, runtime.NumCPU()))}, nil
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

// AddProvider creates a provider account.
func (s *Service) AddProvider(ctx context.Context, email, name, password string) (consult.Provider, error) {
	email = strings.TrimSpace(email)
	name = strings.TrimSpace(name)
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != email || len(email) > 254 {
		return consult.Provider{}, errcode.Errorf(errcode.BadField, "%q is not an email address", email)
	}
	if name == "" || utf8.RuneCountInString(name) > MaxNameLength {
		return consult.Provider{}, errcode.Errorf(errcode.BadField, "name must be 1 to %d characters", MaxNameLength)
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
