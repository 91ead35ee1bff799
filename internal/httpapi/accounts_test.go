package httpapi_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/accounts"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/httpapi"
	"github.com/telemed/telemed/internal/store"
)

// browser returns a request as telemed's own page sends it: JSON, from the server's origin, with
// the session cookie if session is set.
func browser(method, target, body, session string) *http.Request {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Origin", "http://"+r.Host)
	if session != "" {
		r.AddCookie(&http.Cookie{Name: httpapi.SessionCookie, Value: session})
	}
	return r
}

func sessionCookie(t *testing.T, w *httptest.ResponseRecorder) *http.Cookie {
	t.Helper()
	for _, c := range w.Result().Cookies() {
		if c.Name == httpapi.SessionCookie {
			return c
		}
	}
	t.Fatalf("no %s cookie set: %v", httpapi.SessionCookie, w.Header()["Set-Cookie"])
	return nil
}

func TestSignInSetsTheSessionCookie(t *testing.T) {
	acc := signedIn()
	acc.login = func(_ context.Context, email, password string) (string, consult.Provider, error) {
		if email != "alice@example.org" || password != "correct horse" {
			t.Errorf("Login(%q, %q)", email, password)
		}
		return "new-session", alice, nil
	}
	acc.setup = func(_ context.Context, token, email, name, password string) (consult.Provider, error) {
		if token != "setup-1" || email != "alice@example.org" || name != "Dr Alice" || password != "correct horse" {
			t.Errorf("Setup(%q, %q, %q, %q)", token, email, name, password)
		}
		return alice, nil
	}
	acc.newSession = func(_ context.Context, providerID string) (string, error) {
		if providerID != alice.ID {
			t.Errorf("NewSession(%q)", providerID)
		}
		return "new-session", nil
	}
	cases := []struct {
		name, path, body string
		status           int
	}{
		{"login", "/api/v1/session", `{"email":"alice@example.org","password":"correct horse"}`, http.StatusOK},
		{"setup", "/api/v1/setup", `{"token":"setup-1","email":"alice@example.org","name":"Dr Alice","password":"correct horse"}`, http.StatusCreated},
	}
	for _, c := range cases {
		for _, secure := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s secure=%v", c.name, secure), func(t *testing.T) {
				h := newAPI(t, httpapi.Options{Accounts: acc, SecureCookies: secure})
				w := serve(h, browser("POST", c.path, c.body, ""))
				var body struct{ Provider map[string]string }
				decodeBody(t, w, c.status, &body)
				if want := map[string]string{"id": alice.ID, "email": alice.Email, "name": alice.Name}; len(body.Provider) != 3 ||
					body.Provider["id"] != want["id"] || body.Provider["email"] != want["email"] || body.Provider["name"] != want["name"] {
					t.Errorf("provider %v, want %v (and nothing else)", body.Provider, want)
				}
				if strings.Contains(w.Body.String(), "argon2id") {
					t.Errorf("the password hash was sent: %s", w.Body)
				}
				ck := sessionCookie(t, w)
				if ck.Value != "new-session" || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" ||
					ck.MaxAge != int(accounts.SessionTTL/time.Second) || ck.Secure != secure {
					t.Errorf("cookie %s, want HttpOnly SameSite=Lax Path=/ Max-Age=%d Secure=%v", w.Header().Get("Set-Cookie"),
						int(accounts.SessionTTL/time.Second), secure)
				}
			})
		}
	}
}

func TestLoginWithTheWrongPassword(t *testing.T) {
	acc := signedIn()
	acc.login = func(context.Context, string, string) (string, consult.Provider, error) {
		return "", consult.Provider{}, errcode.New(errcode.BadCredentials, "wrong email or password")
	}
	h := newAPI(t, httpapi.Options{Accounts: acc})
	w := serve(h, browser("POST", "/api/v1/session", `{"email":"alice@example.org","password":"wrong"}`, ""))
	wantError(t, w, http.StatusUnauthorized, errcode.BadCredentials)
	if c := w.Header().Get("Set-Cookie"); c != "" {
		t.Errorf("a failed login set a cookie: %s", c)
	}
}

func TestLogoutClearsTheCookie(t *testing.T) {
	acc := signedIn()
	var ended string
	acc.logout = func(_ context.Context, token string) error {
		ended = token
		return nil
	}
	h := newAPI(t, httpapi.Options{Accounts: acc})
	w := serve(h, browser("DELETE", "/api/v1/session", "", aliceSession))
	if w.Code != http.StatusNoContent {
		t.Fatalf("%d %s, want 204", w.Code, w.Body)
	}
	if ended != aliceSession {
		t.Errorf("Logout(%q), want the cookie's session %q", ended, aliceSession)
	}
	if ck := sessionCookie(t, w); ck.Value != "" || ck.MaxAge >= 0 || !ck.HttpOnly {
		t.Errorf("cookie %s, want it emptied and expired", w.Header().Get("Set-Cookie"))
	}
}

func TestCSRF(t *testing.T) {
	acc := signedIn()
	acc.login = func(context.Context, string, string) (string, consult.Provider, error) { return "s", alice, nil }
	acc.logout = func(context.Context, string) error { return nil }
	h := newAPI(t, httpapi.Options{Accounts: acc, AllowedOrigins: []string{"proxy.example"}})
	const creds = `{"email":"alice@example.org","password":"p"}`
	cases := []struct {
		name    string
		req     func() *http.Request
		refused bool
	}{
		{"our own page", func() *http.Request { return browser("POST", "/api/v1/session", creds, "") }, false},
		{"an allowed origin", func() *http.Request {
			r := browser("POST", "/api/v1/session", creds, "")
			r.Header.Set("Origin", "https://proxy.example")
			return r
		}, false},
		{"a program, without Origin", func() *http.Request {
			r := browser("POST", "/api/v1/session", creds, "")
			r.Header.Del("Origin")
			return r
		}, false},
		{"another origin", func() *http.Request {
			r := browser("POST", "/api/v1/session", creds, "")
			r.Header.Set("Origin", "https://evil.example")
			return r
		}, true},
		{"another origin sent to its own name (DNS rebinding)", func() *http.Request {
			r := browser("POST", "http://evil.example/api/v1/session", creds, "")
			r.Header.Set("Origin", "http://evil.example")
			return r
		}, true},
		{"a state change from another origin sent to its own name", func() *http.Request {
			r := browser("DELETE", "http://evil.example/api/v1/session", "", aliceSession)
			r.Header.Set("Origin", "http://evil.example")
			return r
		}, true},
		{"another origin with the cookie", func() *http.Request {
			r := browser("DELETE", "/api/v1/session", "", aliceSession)
			r.Header.Set("Origin", "https://evil.example")
			return r
		}, true},
		{"cross-site by Sec-Fetch-Site", func() *http.Request {
			r := browser("POST", "/api/v1/session", creds, "")
			r.Header.Del("Origin")
			r.Header.Set("Sec-Fetch-Site", "cross-site")
			return r
		}, true},
		{"a form's content type", func() *http.Request {
			r := browser("POST", "/api/v1/session", creds, "")
			r.Header.Set("Content-Type", "text/plain")
			return r
		}, true},
		{"another origin with an Authorization header", func() *http.Request {
			r := browser("POST", "/api/v1/session", creds, "")
			r.Header.Set("Origin", "https://evil.example")
			r.Header.Set("Authorization", "Bearer "+aliceToken)
			return r
		}, false},
		{"another origin reading", func() *http.Request {
			r := browser("GET", "/api/v1/me", "", aliceSession)
			r.Header.Set("Origin", "https://evil.example")
			return r
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := serve(h, c.req())
			if c.refused {
				wantError(t, w, http.StatusForbidden, errcode.BadOrigin)
			} else if w.Code >= 300 {
				t.Fatalf("%d %s, want it let through", w.Code, w.Body)
			}
		})
	}
}

func TestMe(t *testing.T) {
	h := newAPI(t, httpapi.Options{})
	cases := []struct {
		name  string
		authz string
		ok    bool
	}{
		{"no credentials", "", false},
		{"an unknown session", "cookie:expired", false},
		{"an unknown API token", "Bearer tm_revoked", false},
		{"not Bearer", "Basic " + aliceToken, false},
		{"her session", "cookie:" + aliceSession, true},
		{"her API token", "Bearer " + aliceToken, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/api/v1/me", nil)
			if cookie, ok := strings.CutPrefix(c.authz, "cookie:"); ok {
				r.AddCookie(&http.Cookie{Name: httpapi.SessionCookie, Value: cookie})
			} else if c.authz != "" {
				r.Header.Set("Authorization", c.authz)
			}
			w := serve(h, r)
			if !c.ok {
				wantError(t, w, http.StatusUnauthorized, errcode.Unauthenticated)
				return
			}
			var me map[string]string
			decodeBody(t, w, http.StatusOK, &me)
			if me["id"] != alice.ID || me["email"] != alice.Email || me["name"] != alice.Name {
				t.Errorf("%v, want alice", me)
			}
		})
	}
}

func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	h := newAPI(t, httpapi.Options{Static: fstest.MapFS{"login.html": {Data: []byte("<!doctype html>")}}})
	cases := []struct {
		name   string
		req    *http.Request
		status int
	}{
		{"a page", httptest.NewRequest("GET", "/login", nil), http.StatusOK},
		{"health", httptest.NewRequest("GET", "/healthz", nil), http.StatusOK},
		{"an API answer", request("GET", "/api/v1/me", ""), http.StatusOK},
		{"unauthenticated", httptest.NewRequest("GET", "/api/v1/me", nil), http.StatusUnauthorized},
		{"no such endpoint", request("GET", "/api/v1/nothing", ""), http.StatusNotFound},
		{"refused by CSRF", func() *http.Request {
			r := browser("DELETE", "/api/v1/session", "", aliceSession)
			r.Header.Set("Origin", "https://evil.example")
			return r
		}(), http.StatusForbidden},
		{"FHIR", httptest.NewRequest("GET", "/fhir/r4/metadata", nil), http.StatusOK},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := serve(h, c.req)
			if w.Code != c.status {
				t.Fatalf("%d %s, want %d", w.Code, w.Body, c.status)
			}
			csp := w.Header().Get("Content-Security-Policy")
			for _, d := range []string{"default-src 'self'", "script-src 'self'", "object-src 'none'", "frame-ancestors 'none'"} {
				if !strings.Contains(csp, d) {
					t.Errorf("Content-Security-Policy %q lacks %q", csp, d)
				}
			}
			for name, want := range map[string]string{
				"X-Frame-Options":        "DENY",
				"X-Content-Type-Options": "nosniff",
				"Referrer-Policy":        "no-referrer",
			} {
				if got := w.Header().Get(name); got != want {
					t.Errorf("%s: %q, want %q", name, got, want)
				}
			}
			if hsts := w.Header().Get("Strict-Transport-Security"); hsts != "" {
				t.Errorf("Strict-Transport-Security %q over plain HTTP", hsts)
			}
		})
	}
	t.Run("HSTS over TLS", func(t *testing.T) {
		r := httptest.NewRequest("GET", "/healthz", nil)
		r.TLS = &tls.ConnectionState{}
		if hsts := serve(h, r).Header().Get("Strict-Transport-Security"); !strings.HasPrefix(hsts, "max-age=") {
			t.Errorf("Strict-Transport-Security %q over TLS", hsts)
		}
	})
}

// TestHealthAndReadiness: /healthz says the process is alive whatever the store does; /readyz tells a
// load balancer, in a fixed word, why this node should get no traffic, and never the error itself.
func TestHealthAndReadiness(t *testing.T) {
	var ready error
	h := newAPI(t, httpapi.Options{Ready: func(context.Context) error { return ready }})
	check := func(path string, status int, want string) {
		t.Helper()
		w := serve(h, httptest.NewRequest("GET", path, nil))
		if w.Code != status || !strings.Contains(w.Body.String(), want) {
			t.Errorf("GET %s = %d %s, want %d with %s", path, w.Code, w.Body.String(), status, want)
		}
		if strings.Contains(w.Body.String(), "/var/lib") {
			t.Errorf("GET %s shows the store's error: %s", path, w.Body.String())
		}
	}
	check("/healthz", http.StatusOK, `"status":"ok"`)
	check("/readyz", http.StatusOK, `"status":"ready"`)

	ready = errors.New("open /var/lib/telemed/telemed.db: disk I/O error")
	check("/healthz", http.StatusOK, `"status":"ok"`)
	check("/readyz", http.StatusServiceUnavailable, `"reason":"the store does not answer"`)

	ready = fmt.Errorf("close: %w", httpapi.ErrDraining)
	check("/readyz", http.StatusServiceUnavailable, `"reason":"the server is shutting down"`)

	ready = fmt.Errorf("%w: redis at /var/lib/redis.sock: connection refused", httpapi.ErrRedisDown)
	check("/readyz", http.StatusServiceUnavailable, `{"reason":"redis does not answer","status":"unavailable"}`)
}

// TestSignInWhileTheStoreIsDown: a sign-in that cannot reach the store is a 503 in words, with when
// to try again, whether the store says so or its connection failed; never a 500, and never the
// error's detail.
func TestSignInWhileTheStoreIsDown(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
	for name, err := range map[string]error{
		"the store says it":    fmt.Errorf("provider by email: %w: dial db.internal:5432", store.ErrUnavailable),
		"a connection refused": fmt.Errorf("provider by email: %w", refused),
		"as an errcode.Error":  errcode.New(errcode.Unavailable, "the database does not answer; try again in a moment"),
	} {
		t.Run(name, func(t *testing.T) {
			var logged bytes.Buffer
			h := newAPI(t, httpapi.Options{Logger: slog.New(slog.NewTextHandler(&logged, nil)), Accounts: &fakeAccounts{
				login: func(context.Context, string, string) (string, consult.Provider, error) {
					return "", consult.Provider{}, err
				}}})
			w := serve(h, browser("POST", "/api/v1/session", `{"email":"alice@example.org","password":"correct horse"}`, ""))
			wantError(t, w, http.StatusServiceUnavailable, errcode.Unavailable)
			if got := w.Header().Get("Retry-After"); got == "" {
				t.Error("no Retry-After")
			}
			if strings.Contains(w.Body.String(), "db.internal") || strings.Contains(w.Body.String(), "refused") {
				t.Errorf("the answer shows the error's detail: %s", w.Body)
			}
			if _, ok := err.(*errcode.Error); !ok && !strings.Contains(logged.String(), "does not answer") {
				t.Errorf("not logged: %q", logged.String())
			}
		})
	}
}
