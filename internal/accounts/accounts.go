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
	TakeSetting(ctx context.Context, key, value string) (bool, error)
}

// Options configure a Service.
type Options struct {
	Store Store
	// Now returns the current time; time.Now if nil.
	Now func() time.Time
	// PasswordParams are argon2id's costs; auth.DefaultPasswordParams if zero.
	PasswordParams auth.PasswordParams
	// Logger receives what an operator should know (a setup token that could not be put back);
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
	p, err := s.newProvider(ctx, email, name, password)
	if err != nil {
		return p, err
	}
	return p, s.createProvider(ctx, p)
}

// checkProvider returns a new account's email and name trimmed, or why they or the password are
// refused. It hashes nothing, so that setup can refuse a bad form cheaply before it takes the token.
func checkProvider(email, name, password string) (string, string, error) {
	email = strings.TrimSpace(email)
	name = strings.TrimSpace(name)
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != email || len(email) > 254 {
		return "", "", errcode.Errorf(errcode.BadField, "%q is not an email address", email)
	}
	if name == "" || utf8.RuneCountInString(name) > MaxNameLength {
		return "", "", errcode.Errorf(errcode.BadField, "name must be 1 to %d characters", MaxNameLength)
	}
	if len(password) < auth.MinPasswordLength {
		return "", "", errcode.Errorf(errcode.WeakPassword, "%s", auth.ErrWeakPassword.Error())
	}
	return email, name, nil
}

// newProvider checks a new account and hashes its password, storing nothing.
func (s *Service) newProvider(ctx context.Context, email, name, password string) (consult.Provider, error) {
	email, name, err := checkProvider(email, name, password)
	if err != nil {
		return consult.Provider{}, err
	}
	var hash string
	if herr := s.withHashing(ctx, func() { hash, err = auth.HashPassword(password, s.params) }); herr != nil {
		return consult.Provider{}, herr
	}
	if errors.Is(err, auth.ErrWeakPassword) {
		return consult.Provider{}, errcode.Errorf(errcode.WeakPassword, "%s", err.Error())
	}
	if err != nil {
		return consult.Provider{}, fmt.Errorf("hash the password of %s: %w", email, err)
	}
	return consult.Provider{ID: auth.NewID("u_"), Email: email, Name: name, PasswordHash: hash, CreatedAt: s.now().UTC()}, nil
}

// createProvider stores an account made by newProvider.
func (s *Service) createProvider(ctx context.Context, p consult.Provider) error {
	if err := s.store.CreateProvider(ctx, p); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errcode.Errorf(errcode.Conflict, "a provider with email %s already exists", p.Email)
		}
		return fmt.Errorf("add provider %s: %w", p.Email, err)
	}
	return nil
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

// Setup creates the first provider account with the one-time setup token. The token is compared first,
// then the form checked, then the token taken (removed from the store, which only one caller can do)
// before the password is hashed: of requests presenting it at once, only the one that takes it goes on
// to create an account, and the others are told at once, without a hash, that the link was used. If
// hashing or storing then fails, the token is put back so that setup can be tried again.
func (s *Service) Setup(ctx context.Context, token, email, name, password string) (consult.Provider, error) {
	want, err := s.store.Setting(ctx, settingSetupToken)
	if errors.Is(err, store.ErrNotFound) || (err == nil && (token == "" || subtle.ConstantTimeCompare([]byte(token), []byte(want)) != 1)) {
		return consult.Provider{}, errcode.Errorf(errcode.BadToken, "this setup link is not valid: run telemed serve and use the link it prints")
	}
	if err != nil {
		return consult.Provider{}, fmt.Errorf("setup: read the setup token: %w", err)
	}
	if n, err := s.store.CountProviders(ctx); err != nil || n > 0 {
		if err != nil {
			return consult.Provider{}, fmt.Errorf("setup: count providers: %w", err)
		}
		return consult.Provider{}, errcode.Errorf(errcode.Conflict, "setup is already done: sign in instead")
	}
	if _, _, err := checkProvider(email, name, password); err != nil {
		return consult.Provider{}, err
	}
	won, err := s.store.TakeSetting(ctx, settingSetupToken, want)
	if err != nil {
		return consult.Provider{}, fmt.Errorf("setup: take the setup token: %w", err)
	}
	if !won {
		return consult.Provider{}, errcode.Errorf(errcode.BadToken, "this setup link was already used: sign in instead")
	}
	p, err := s.newProvider(ctx, email, name, password)
	if err == nil {
		err = s.createProvider(ctx, p)
	}
	if err != nil {
		// Not cancelled with the request: the token must go back even when the client has gone.
		if _, perr := s.store.EnsureSetting(context.WithoutCancel(ctx), settingSetupToken, want); perr != nil {
			s.log.Error("could not put back the setup token after a failed setup", "err", perr)
		}
		return consult.Provider{}, err
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
