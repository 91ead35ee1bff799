package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/consultations"
	"github.com/telemed/telemed/internal/monitor"
	"github.com/telemed/telemed/internal/origin"
)

// Authenticator tells which provider a session cookie or an API token stands for.
type Authenticator interface {
	SessionProvider(ctx context.Context, token string) (consult.Provider, error)
	APITokenProvider(ctx context.Context, token string) (consult.Provider, error)
}

// caller is the provider behind a request, and how they authenticated.
type caller struct {
	provider consult.Provider
	actor    string // for the audit trail
}

// authError is why a request could not be authenticated as a provider.
type authError struct{ message string }

// authenticate returns the provider behind a request: an API token in "Authorization: Bearer", or a
// session cookie.
func (a *api) authenticate(r *http.Request) (caller, *authError) {
	if authz := r.Header.Get("Authorization"); authz != "" {
		token, ok := strings.CutPrefix(authz, "Bearer ")
		if !ok {
			return caller{}, &authError{"Authorization must be \"Bearer <token>\""}
		}
		p, err := a.Accounts.APITokenProvider(r.Context(), strings.TrimSpace(token))
		if err != nil {
			return caller{}, &authError{"the API token is unknown or revoked"}
		}
		return caller{provider: p, actor: p.ID + " (api)"}, nil
	}
	cookie, err := r.Cookie(SessionCookie)
	if err != nil {
		return caller{}, &authError{"sign in first"}
	}
	p, err := a.Accounts.SessionProvider(r.Context(), cookie.Value)
	if err != nil {
		return caller{}, &authError{"your session has expired; sign in again"}
	}
	return caller{provider: p, actor: p.ID}, nil
}

// authenticateProvider is authenticate for the FHIR API: the provider, how the audit trail names
// them, or why the request is not a provider's.
func (a *api) authenticateProvider(r *http.Request) (consult.Provider, string, error) {
	c, aerr := a.authenticate(r)
	if aerr != nil {
		return consult.Provider{}, "", errors.New(aerr.message)
	}
	return c.provider, c.actor, nil
}

// provider wraps a handler that needs a signed-in provider (session cookie or API token).
func (a *api) provider(h func(http.ResponseWriter, *http.Request, caller)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, aerr := a.authenticate(r)
		if aerr != nil {
			writeError(w, http.StatusUnauthorized, errcode.Unauthenticated, aerr.message)
			return
		}
		h(w, r, c)
	}
}

// providerOrLink wraps a handler that a provider may call signed in or with an API token, and that
// whoever holds a consultation link token may call with "Authorization: Bearer <link token>"; the
// consultations decide what the link allows. Link tokens ("<consultation>.<role>.<expiry>.<signature>")
// contain dots and API tokens ("tm_" and base64url) never do, which tells them apart.
func (a *api) providerOrLink(h func(http.ResponseWriter, *http.Request, consultations.Caller)) http.HandlerFunc {
	asProvider := a.provider(func(w http.ResponseWriter, r *http.Request, c caller) {
		h(w, r, consultations.ProviderCaller(c.provider, c.actor))
	})
	return func(w http.ResponseWriter, r *http.Request) {
		if token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && strings.Contains(token, ".") {
			h(w, r, consultations.LinkCaller(strings.TrimSpace(token)))
			return
		}
		asProvider(w, r)
	}
}

// sameOrigin is the CSRF check for cookie-authenticated writes: a JSON content type (which a form on
// another site cannot send without a preflight) and, when the browser says where it comes from, our origin.
func (a *api) sameOrigin(r *http.Request) bool {
	if ct := r.Header.Get("Content-Type"); r.ContentLength != 0 && !strings.HasPrefix(ct, "application/json") {
		return false
	}
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return false
	}
	return origin.Allowed(r, a.AllowedOrigins)
}

func (a *api) setCookie(w http.ResponseWriter, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: a.SecureCookies, SameSite: http.SameSiteLaxMode})
}

// device wraps a handler that needs a device token.
func (a *api) device(h func(http.ResponseWriter, *http.Request, monitor.Device)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			writeError(w, http.StatusUnauthorized, errcode.Unauthenticated, "send the device token as \"Authorization: Bearer td_...\"")
			return
		}
		d, err := a.Devices.DeviceByToken(r.Context(), strings.TrimSpace(token))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		h(w, r, d)
	}
}
