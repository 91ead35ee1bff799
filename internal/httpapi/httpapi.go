// Package httpapi is telemed's HTTP edge: the JSON API, the web pages, the signaling endpoint's
// route, and the security headers on every response. It maps service errors to status codes and shows
// internal details to no one but the log.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/httpapi/fhirapi"
	"github.com/telemed/telemed/internal/httpapi/jsonbody"
	"github.com/telemed/telemed/internal/store"
)

// Export is what the FHIR API needs (monitoring.Service has it): each read is audited as an export.
type Export = fhirapi.Export

// SessionCookie is the name of the provider's session cookie.
const SessionCookie = "telemed_session"

// maxBody bounds JSON request bodies.
const maxBody = 64 << 10

// maxTranscriptBody bounds the body of a transcript save, which may be far larger than other requests:
// 5000 messages of up to 4000 characters each.
const maxTranscriptBody = 32 << 20

// transcriptReadTimeout replaces the server's read deadline for a transcript save, which may be a
// large upload over a slow connection. It is set only once the caller has been authorized.
const transcriptReadTimeout = 5 * time.Minute

// Options configure the HTTP handler.
type Options struct {
	// Accounts signs providers in and out and creates the first account.
	Accounts Accounts
	// Consultations serves the consultation and transcript endpoints.
	Consultations Consultations
	// Invitations serves a consultation's invitations.
	Invitations Invitations
	// InvitationRevoked is told when an invitation is revoked, to remove its holder from the call.
	// Default: nothing.
	InvitationRevoked func(consultationID, invitationID string)
	// Quality serves connection tests and call quality reports. Default: no such endpoints.
	Quality Quality
	// TestICEServers gives a connection test its ICE servers. Default: none.
	TestICEServers TestICEServers
	// ICETransportPolicy is every call's RTCConfiguration.iceTransportPolicy, "all" or "relay",
	// told to a connection test. Default: "all".
	ICETransportPolicy string
	// Patients serves a provider's patients' records.
	Patients Patients
	// Events streams a patient's record as it changes.
	Events Events
	// Devices serves the endpoints that monitoring devices call.
	Devices Devices
	// Export serves the FHIR API.
	Export Export
	// BaseURL is the server's public URL, which FHIR references and links start with.
	BaseURL string
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// Signaling handles GET /ws. Default: a 404, for a handler without signaling.
	Signaling http.Handler
	// EndConsultation is told when a consultation is ended, to disconnect its participants.
	EndConsultation func(id string)
	// Static is the browser client's files. A folder that opens is listed by the file server:
	// web.Static opens files only.
	Static fs.FS
	// SecureCookies marks cookies Secure; set when served over TLS.
	SecureCookies bool
	// AllowedOrigins are the hosts (host or host:port) whose pages may call the API with a cookie:
	// the public URL's and --allowed-origin's. The request's Host is not trusted. Default: none.
	AllowedOrigins []string
	// Ready reports whether the server can take requests; GET /readyz answers 503 while it errs
	// (ErrDraining: the server is shutting down; any other error: the store does not answer).
	Ready func(ctx context.Context) error
	// Metrics serves Prometheus metrics at GET /metrics to a provider's API token or session.
	Metrics http.Handler
	// Present reports whether a person is in a consultation's call, for a device asking whether to
	// join. Default: nobody ever is.
	Present func(consultationID string) bool
	// DeviceRevoked is told when a device is revoked, to disconnect it from the calls it is in.
	// Default: nothing.
	DeviceRevoked func(deviceID string)
	Logger        *slog.Logger
}

type api struct {
	Options
}

// New returns the handler for every route of telemed.
func New(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.EndConsultation == nil {
		o.EndConsultation = func(string) {}
	}
	if o.DeviceRevoked == nil {
		o.DeviceRevoked = func(string) {}
	}
	if o.InvitationRevoked == nil {
		o.InvitationRevoked = func(string, string) {}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Signaling == nil {
		o.Signaling = http.NotFoundHandler()
	}
	if o.Present == nil {
		o.Present = func(string) bool { return false }
	}
	if o.ICETransportPolicy == "" {
		o.ICETransportPolicy = "all"
	}
	a := &api{o}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.Handle("GET /ws", o.Signaling)

	if o.Metrics != nil {
		mux.HandleFunc("GET /metrics", a.provider(func(w http.ResponseWriter, r *http.Request, _ caller) {
			o.Metrics.ServeHTTP(w, r)
		}))
	}
	mux.HandleFunc("GET /api/v1/setup", a.setupNeeded)
	mux.HandleFunc("POST /api/v1/setup", a.setup)
	mux.HandleFunc("POST /api/v1/session", a.login)
	mux.HandleFunc("DELETE /api/v1/session", a.logout)
	mux.HandleFunc("GET /api/v1/me", a.provider(a.me))
	mux.HandleFunc("GET /api/v1/consultations", a.provider(a.listConsultations))
	mux.HandleFunc("POST /api/v1/consultations", a.provider(a.createConsultation))
	mux.HandleFunc("GET /api/v1/consultations/{id}", a.provider(a.getConsultation))
	mux.HandleFunc("POST /api/v1/consultations/{id}/end", a.provider(a.endConsultation))
	mux.HandleFunc("POST /api/v1/consultations/{id}/transcript", a.providerOrLink(a.saveTranscript))
	mux.HandleFunc("GET /api/v1/consultations/{id}/transcript", a.providerOrLink(a.getTranscript))
	if o.Invitations != nil {
		mux.HandleFunc("POST /api/v1/consultations/{id}/invitations", a.providerOrLink(a.invite))
		mux.HandleFunc("GET /api/v1/consultations/{id}/invitations", a.providerOrLink(a.listInvitations))
		mux.HandleFunc("DELETE /api/v1/consultations/{id}/invitations/{inv}", a.providerOrLink(a.revokeInvitation))
	}
	a.qualityRoutes(mux)
	a.monitoringRoutes(mux)
	fhirapi.Mount(mux, fhirapi.Options{Export: o.Export, BaseURL: o.BaseURL, Now: o.Now, Logger: o.Logger,
		Authenticate: a.authenticateProvider, UserError: statusOf})
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) { apiNotFound(w, r, mux) })

	mux.HandleFunc("GET /{$}", a.page("index.html"))
	mux.HandleFunc("GET /login", a.page("login.html"))
	mux.HandleFunc("GET /setup", a.page("setup.html"))
	mux.HandleFunc("GET /c/{id}", a.page("call.html"))
	mux.HandleFunc("GET /patients/{id}", a.page("patient.html"))
	mux.HandleFunc("GET /enroll", a.page("enroll.html"))
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(o.Static)))
	return securityHeaders(a.csrf(mux))
}

// apiMethods are the methods the API's routes are tried with to tell a wrong method from a wrong path.
var apiMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// apiNotFound answers an API request that no route took. The "/api/" catch-all that gives every
// API error its JSON shape also matches a known path with a wrong method, which ServeMux would
// otherwise answer 405 itself; so the other methods are tried on mux, and a path that takes some of
// them gets 405 with Allow, a path that takes none 404.
func apiNotFound(w http.ResponseWriter, r *http.Request, mux *http.ServeMux) {
	var allow []string
	for _, m := range apiMethods {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "" && pattern != "/api/" {
			allow = append(allow, m)
		}
	}
	if len(allow) == 0 {
		writeError(w, http.StatusNotFound, errcode.NotFound, "no such API endpoint")
		return
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, http.StatusMethodNotAllowed, errcode.MethodNotAllowed,
		fmt.Sprintf("%s is not allowed here; this endpoint takes %s", r.Method, strings.Join(allow, ", ")))
}

// csrf refuses state-changing API requests that a page on another site could make a browser send:
// sign-in and setup as much as anything done with a session cookie. A request with an Authorization
// header comes from a program, not a browser's ambient credentials, and is exempt.
func (a *api) csrf(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		safe := r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions
		if !safe && strings.HasPrefix(r.URL.Path, "/api/") && r.Header.Get("Authorization") == "" && !a.sameOrigin(r) {
			writeError(w, http.StatusForbidden, errcode.BadOrigin, "this request must come from telemed's own pages, as JSON")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// securityHeaders sets the headers every response carries. The CSP allows only the server's own
// scripts and styles: user-supplied text can never run as code.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; "+
			"img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; "+
			"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self), geolocation=()")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if r.TLS != nil {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		next.ServeHTTP(w, r)
	})
}

func (a *api) page(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := fs.ReadFile(a.Static, name)
		if err != nil {
			a.Logger.Error("page missing from the embedded client", "page", name, "err", err)
			http.Error(w, "page not found", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(body)
	}
}

// ErrDraining is what Options.Ready returns while the server shuts down: a load balancer should send
// new work elsewhere.
var ErrDraining = errors.New("the server is shutting down")

// ErrRedisDown is wrapped in what Options.Ready returns when the Redis that the nodes share does not
// answer: the node cannot reach the others.
var ErrRedisDown = errors.New("redis does not answer")

// healthz says the process is alive and serving HTTP; whether it should get traffic is readyz's.
func (a *api) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz says whether this node should get traffic: the store (and Redis, if any) answers and it is
// not shutting down.
// The reason is in words and fixed; the error itself, which may name files or hosts, is logged.
func (a *api) readyz(w http.ResponseWriter, r *http.Request) {
	if a.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := a.Ready(ctx); err != nil {
			reason := "the store does not answer"
			switch {
			case errors.Is(err, ErrDraining):
				reason = "the server is shutting down"
			case errors.Is(err, ErrRedisDown):
				reason = ErrRedisDown.Error()
				a.Logger.Warn("readiness check failed", "err", err)
			default:
				a.Logger.Warn("readiness check failed", "err", err)
			}
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": reason})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code errcode.Code, message string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": string(code), "message": message}})
}

// statusOfCode is the HTTP status of each code of errcode.API.
var statusOfCode = map[errcode.Code]int{
	errcode.BadField:         http.StatusBadRequest,
	errcode.BadJSON:          http.StatusBadRequest,
	errcode.WeakPassword:     http.StatusBadRequest,
	errcode.BadCredentials:   http.StatusUnauthorized,
	errcode.Unauthenticated:  http.StatusUnauthorized,
	errcode.TooLarge:         http.StatusRequestEntityTooLarge,
	errcode.BadToken:         http.StatusForbidden,
	errcode.NotFound:         http.StatusNotFound,
	errcode.MethodNotAllowed: http.StatusMethodNotAllowed,
	errcode.Busy:             http.StatusTooManyRequests,
	errcode.Conflict:         http.StatusConflict,
	errcode.Ended:            http.StatusConflict,
	errcode.BadOrigin:        http.StatusForbidden,
	errcode.Unavailable:      http.StatusServiceUnavailable,
	errcode.Internal:         http.StatusInternalServerError,
}

// retryAfter is the Retry-After of an unavailable answer, in seconds: long enough for a database
// fail-over or a restarted Redis, short enough that a person waiting does not give up.
const retryAfter = "5"

// unavailableMessage is the answer to a request that failed because the store or Redis does not
// answer.
const unavailableMessage = "the server cannot reach its database or Redis at the moment; try again in a few seconds"

// reply writes v with status, or err if it is not nil.
func (a *api) reply(w http.ResponseWriter, r *http.Request, status int, v any, err error) {
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, status, v)
}

// fail writes err: an errcode.Error as itself, anything else as an opaque internal error. A code
// with no status here is a fault of the server (a test holds every API code to this table).
func (a *api) fail(w http.ResponseWriter, r *http.Request, err error) {
	if se, ok := userError(err); ok {
		if se.Code == errcode.Unavailable {
			w.Header().Set("Retry-After", retryAfter)
		}
		writeError(w, statusOfCode[se.Code], se.Code, se.Message)
		return
	}
	if dependencyDown(err) {
		// Not a fault of this server's: said in words, with when to try again; the detail, which
		// names hosts, goes to the log.
		a.Logger.Warn("request failed: a service the server depends on does not answer", "method", r.Method, "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", retryAfter)
		writeError(w, http.StatusServiceUnavailable, errcode.Unavailable, unavailableMessage)
		return
	}
	a.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, errcode.Internal, "something went wrong on the server; it has been logged")
}

// dependencyDown reports whether err says that the store or Redis could not be reached: a store
// wraps store.ErrUnavailable; a connection that could not be made or broke (a *net.OpError, which
// database and Redis clients wrap) says so too, since no handler here does other network I/O.
func dependencyDown(err error) bool {
	var op *net.OpError
	return errors.Is(err, store.ErrUnavailable) || errors.As(err, &op)
}

// userError returns the error a person can act on inside err: one with a code of the API other than
// Internal. Anything else, an internal code included, is the server's fault and is shown only as
// "something went wrong"; its detail goes to the log.
func userError(err error) (*errcode.Error, bool) {
	var se *errcode.Error
	if !errors.As(err, &se) || se.Code == errcode.Internal {
		return nil, false
	}
	_, ok := statusOfCode[se.Code]
	return se, ok
}

// statusOf is userError for the FHIR API: the status and message of an error a person can act on,
// a store or Redis that does not answer included.
func statusOf(err error) (int, string, bool) {
	se, ok := userError(err)
	if !ok && dependencyDown(err) {
		return http.StatusServiceUnavailable, unavailableMessage, true
	}
	if !ok {
		return 0, "", false
	}
	return statusOfCode[se.Code], se.Message, true
}

// largeBody is what a request that may carry a large body allows.
type largeBody struct {
	limit int64
	// readTimeout replaces the server's read deadline: a large body may come over a slow link.
	readTimeout time.Duration
	// what is the too_large message, with a %d for the limit in MiB.
	what string
}

// decodeLarge reads a JSON body of at most l.limit bytes into v, once the caller is authorized, with
// l.readTimeout to send it in; too_large beyond the limit.
func (a *api) decodeLarge(w http.ResponseWriter, r *http.Request, v any, l largeBody) error {
	if err := http.NewResponseController(w).SetReadDeadline(time.Now().Add(l.readTimeout)); err != nil {
		a.Logger.Debug("could not extend the read deadline for a large body", "path", r.URL.Path, "err", err)
	}
	err := jsonbody.Decode(r, v, l.limit)
	if errors.Is(err, jsonbody.ErrTooLarge) {
		return errcode.Errorf(errcode.TooLarge, l.what, l.limit>>20)
	}
	return err
}

// decode reads a JSON body of at most maxBody bytes into v. An empty body leaves v as it is.
func decode(r *http.Request, v any) error {
	err := jsonbody.Decode(r, v, maxBody)
	if errors.Is(err, jsonbody.ErrTooLarge) {
		return errcode.Errorf(errcode.TooLarge, "the request body is over %d KiB", maxBody>>10)
	}
	return err
}
