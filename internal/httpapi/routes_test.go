package httpapi_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/consultations"
	"github.com/telemed/telemed/internal/httpapi"
	"github.com/telemed/telemed/web"
)

// fakeInvitations is an Invitations whose every call panics: the tests here never reach one.
type fakeInvitations struct{ inv httpapi.Invitations }

func (f *fakeInvitations) Invite(ctx context.Context, by consultations.Caller, id string, role consult.Role, name string) (consultations.InvitationView, error) {
	return f.inv.Invite(ctx, by, id, role, name)
}

func (f *fakeInvitations) Invitations(ctx context.Context, by consultations.Caller, id string) ([]consultations.InvitationView, error) {
	return f.inv.Invitations(ctx, by, id)
}

func (f *fakeInvitations) RevokeInvitation(ctx context.Context, by consultations.Caller, id, inv string) (consultations.InvitationView, error) {
	return f.inv.RevokeInvitation(ctx, by, id, inv)
}

// routes is every JSON API endpoint, by path and the methods it takes, with the body limit of those
// that read a JSON body (0: none read).
var routes = []struct {
	path    string
	methods []string
	limit   int64
}{
	{"/api/v1/setup", []string{"GET", "HEAD", "POST"}, 64 << 10},
	{"/api/v1/session", []string{"POST", "DELETE"}, 64 << 10},
	{"/api/v1/me", []string{"GET", "HEAD"}, 0},
	{"/api/v1/consultations", []string{"GET", "HEAD", "POST"}, 64 << 10},
	{"/api/v1/consultations/c1", []string{"GET", "HEAD"}, 0},
	{"/api/v1/consultations/c1/end", []string{"POST"}, 0},
	{"/api/v1/consultations/c1/transcript", []string{"GET", "HEAD", "POST"}, 32 << 20},
	{"/api/v1/consultations/c1/invitations", []string{"GET", "HEAD", "POST"}, 64 << 10},
	{"/api/v1/consultations/c1/invitations/i1", []string{"DELETE"}, 0},
	{"/api/v1/consultations/c1/ice-servers", []string{"GET", "HEAD"}, 0},
	{"/api/v1/consultations/c1/quality", []string{"GET", "HEAD", "POST"}, 64 << 10},
	{"/api/v1/patients", []string{"GET", "HEAD", "POST"}, 64 << 10},
	{"/api/v1/patients/p1", []string{"GET", "HEAD"}, 0},
	{"/api/v1/patients/p1/enrollments", []string{"POST"}, 0},
	{"/api/v1/patients/p1/devices", []string{"GET", "HEAD"}, 0},
	{"/api/v1/devices/d1", []string{"DELETE"}, 0},
	{"/api/v1/patients/p1/observations", []string{"GET", "HEAD"}, 0},
	{"/api/v1/patients/p1/thresholds", []string{"GET", "HEAD", "PUT"}, 64 << 10},
	{"/api/v1/patients/p1/alerts", []string{"GET", "HEAD"}, 0},
	{"/api/v1/patients/p1/events", []string{"GET", "HEAD"}, 0},
	{"/api/v1/patients/p1/audit", []string{"GET", "HEAD"}, 0},
	// DELETE /api/v1/devices/{id} takes this path too, for a device named "enroll".
	{"/api/v1/devices/enroll", []string{"POST", "DELETE"}, 64 << 10},
	{"/api/v1/device", []string{"GET", "HEAD"}, 0},
	{"/api/v1/observations", []string{"POST"}, 8 << 20},
}

// routesAPI is the API with every optional part on and fakes that panic if a handler gets as far
// as calling them: a wrong method or an oversized body must be answered before.
func routesAPI(t *testing.T) http.Handler {
	// The transcript's body is read once the caller may save it.
	cons := &fakeConsultations{checkAccess: func(context.Context, consultations.Caller, string) error { return nil }}
	return newAPI(t, httpapi.Options{Consultations: cons, Invitations: &fakeInvitations{},
		Quality: &fakeQuality{}, Patients: &fakePatients{}, Events: &fakeEvents{},
		Devices: &fakeDevices{byToken: knownDevice}, Static: web.Static})
}

// TestWrongMethod: each endpoint answers a method it does not take with 405, the error JSON and an
// Allow header listing those it takes; an unknown path is still 404.
func TestWrongMethod(t *testing.T) {
	h := routesAPI(t)
	for _, rt := range routes {
		for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
			if strings.Contains(" "+strings.Join(rt.methods, " ")+" ", " "+m+" ") {
				continue
			}
			t.Run(m+" "+rt.path, func(t *testing.T) {
				w := serve(h, request(m, rt.path, ""))
				wantError(t, w, http.StatusMethodNotAllowed, errcode.MethodNotAllowed)
				if got, want := w.Header().Get("Allow"), strings.Join(rt.methods, ", "); got != want {
					t.Errorf("Allow %q, want %q", got, want)
				}
			})
		}
	}
	wantError(t, serve(h, request("GET", "/api/v1/nothing", "")), http.StatusNotFound, errcode.NotFound)
	wantError(t, serve(h, request("POST", "/api/v2/consultations", "")), http.StatusNotFound, errcode.NotFound)
}

// TestBodyTooLarge: each endpoint that reads a JSON body answers one over its limit with 413
// too_large, whether the body says its length or streams it.
func TestBodyTooLarge(t *testing.T) {
	h := routesAPI(t)
	for _, rt := range routes {
		if rt.limit == 0 {
			continue
		}
		m := bodyMethod(rt.methods)
		req := func(body io.Reader, length int64) *http.Request {
			r := request(m, rt.path, "{}")
			if rt.path == "/api/v1/observations" {
				r.Header.Set("Authorization", "Bearer "+deviceToken)
			}
			r.Body, r.ContentLength = io.NopCloser(body), length
			return r
		}
		t.Run("declared "+m+" "+rt.path, func(t *testing.T) {
			w := serve(h, req(strings.NewReader("{}"), rt.limit+1))
			wantError(t, w, http.StatusRequestEntityTooLarge, errcode.TooLarge)
		})
		t.Run("streamed "+m+" "+rt.path, func(t *testing.T) {
			body := io.MultiReader(strings.NewReader(`{"x":"`), spaces(rt.limit), strings.NewReader(`"}`))
			w := serve(h, req(body, -1))
			wantError(t, w, http.StatusRequestEntityTooLarge, errcode.TooLarge)
		})
	}
}

// bodyMethod is the first of methods that sends a body.
func bodyMethod(methods []string) string {
	for _, m := range methods {
		if m != "GET" && m != "HEAD" {
			return m
		}
	}
	return ""
}

// TestStaticFoldersAreNotListed: a folder of the browser client's files answers 404, not a listing;
// the files in it are served.
func TestStaticFoldersAreNotListed(t *testing.T) {
	h := routesAPI(t)
	for _, path := range []string{"/static/", "/static/js/", "/static/js", "/static/css/"} {
		if w := serve(h, request("GET", path, "")); w.Code != http.StatusNotFound || strings.Contains(w.Body.String(), "<a href") {
			t.Errorf("GET %s: %d %.80q, want 404", path, w.Code, w.Body)
		}
	}
	if w := serve(h, request("GET", "/static/js/call.js", "")); w.Code != http.StatusOK {
		t.Errorf("GET /static/js/call.js: %d, want 200", w.Code)
	}
}
