package httpapi_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/consultations"
	"github.com/telemed/telemed/internal/httpapi"
)

func TestCreateConsultation(t *testing.T) {
	var got consultations.NewConsultation
	var gotActor string
	cons := &fakeConsultations{create: func(_ context.Context, p consult.Provider, actor string, n consultations.NewConsultation) (consultations.ConsultationView, error) {
		if p.ID != alice.ID {
			t.Errorf("created for %q, want alice", p.ID)
		}
		got, gotActor = n, actor
		return consultations.ConsultationView{ID: "c-1", Title: n.Title, PatientID: n.PatientID, JoinURL: "https://telemed.example/c/c-1#join"}, nil
	}}
	h := newAPI(t, httpapi.Options{Consultations: cons})

	w := serve(h, request("POST", "/api/v1/consultations", `{"title":"Follow-up","expires_in":"90m","patient_id":"pat-1"}`))
	var v consultations.ConsultationView
	decodeBody(t, w, http.StatusCreated, &v)
	if want := (consultations.NewConsultation{Title: "Follow-up", TTL: 90 * time.Minute, PatientID: "pat-1"}); got != want || gotActor != aliceAPI {
		t.Errorf("CreateConsultation(%q, %+v), want (%q, %+v)", gotActor, got, aliceAPI, want)
	}
	if v.ID != "c-1" || v.JoinURL == "" {
		t.Errorf("answered %+v", v)
	}

	w = serve(h, browser("POST", "/api/v1/consultations", `{"title":"Walk-in"}`, aliceSession))
	decodeBody(t, w, http.StatusCreated, &v)
	if want := (consultations.NewConsultation{Title: "Walk-in"}); got != want || gotActor != alice.ID {
		t.Errorf("with a session: CreateConsultation(%q, %+v), want (%q, %+v)", gotActor, got, alice.ID, want)
	}
}

func TestCreateConsultationRefusesABadBody(t *testing.T) {
	// CreateConsultation is left nil: a call panics.
	h := newAPI(t, httpapi.Options{Consultations: &fakeConsultations{}})
	cases := []struct {
		body string
		code errcode.Code
	}{
		{`{"title":"x","expires_in":"tomorrow"}`, errcode.BadField},
		{`{"title":"x","expires_in":"90"}`, errcode.BadField},
		{`{"title":"x","colour":"red"}`, errcode.BadJSON},
		{`{"title":`, errcode.BadJSON},
		{`{"title":"` + strings.Repeat("x", 64<<10) + `"}`, errcode.TooLarge},
	}
	for _, c := range cases {
		w := serve(h, request("POST", "/api/v1/consultations", c.body))
		status := http.StatusBadRequest
		if c.code == errcode.TooLarge {
			status = http.StatusRequestEntityTooLarge
		}
		wantError(t, w, status, c.code)
	}
}

func TestEndConsultation(t *testing.T) {
	var hooked []string
	cons := &fakeConsultations{end: func(_ context.Context, p consult.Provider, actor, id string) (consultations.ConsultationView, error) {
		if p.ID != alice.ID || actor != aliceAPI {
			t.Errorf("ended by %q as %q", p.ID, actor)
		}
		if id != "c-1" {
			return consultations.ConsultationView{}, errcode.New(errcode.NotFound, "no such consultation")
		}
		return consultations.ConsultationView{ID: id, Status: consult.StatusEnded}, nil
	}}
	h := newAPI(t, httpapi.Options{Consultations: cons, EndConsultation: func(id string) { hooked = append(hooked, id) }})

	var v consultations.ConsultationView
	decodeBody(t, serve(h, request("POST", "/api/v1/consultations/c-1/end", "")), http.StatusOK, &v)
	if v.ID != "c-1" || v.Status != consult.StatusEnded {
		t.Errorf("answered %+v", v)
	}
	wantError(t, serve(h, request("POST", "/api/v1/consultations/c-2/end", "")), http.StatusNotFound, errcode.NotFound)
	if len(hooked) != 1 || hooked[0] != "c-1" {
		t.Errorf("EndConsultation hook told %q, want only c-1 (the one that ended)", hooked)
	}
}

// mustNotRead is a body that fails the test if it is read.
type mustNotRead struct{ t *testing.T }

func (b mustNotRead) Read([]byte) (int, error) {
	b.t.Error("the body was read")
	return 0, io.EOF
}

func TestSaveTranscriptRefusesBeforeReading(t *testing.T) {
	cons := &fakeConsultations{checkAccess: func(_ context.Context, _ consultations.Caller, id string) error {
		if id != "c-1" {
			t.Errorf("CheckTranscriptAccess(%q)", id)
		}
		return errcode.New(errcode.BadToken, "this link may not save the transcript")
	}}
	h := newAPI(t, httpapi.Options{Consultations: cons})
	r := request("POST", "/api/v1/consultations/c-1/transcript", "")
	r.Body = io.NopCloser(mustNotRead{t})
	r.ContentLength = 1 << 20
	r.Header.Set("Content-Type", "application/json")
	wantError(t, serve(h, r), http.StatusForbidden, errcode.BadToken)
}

func TestTranscriptCaller(t *testing.T) {
	const link = "c-1.provider.1795000000.c2lnbmF0dXJl"
	cases := []struct {
		name  string
		authz string
		want  consultations.Caller
	}{
		{"a link token", "Bearer " + link, consultations.LinkCaller(link)},
		{"an API token", "Bearer " + aliceToken, consultations.ProviderCaller(alice, aliceAPI)},
		{"a session", "", consultations.ProviderCaller(alice, alice.ID)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var saved, read consultations.Caller
			cons := &fakeConsultations{
				checkAccess: func(context.Context, consultations.Caller, string) error { return nil },
				save: func(_ context.Context, by consultations.Caller, id string, msgs []consultations.TranscriptMessage) (consultations.SavedTranscript, error) {
					saved = by
					if id != "c-1" || len(msgs) != 1 || msgs[0] != (consultations.TranscriptMessage{From: "patient", Name: "Bob", Text: "hello", At: "2026-11-24T10:00:00Z"}) {
						t.Errorf("SaveTranscript(%q, %+v)", id, msgs)
					}
					return consultations.SavedTranscript{ConsultationID: id, Messages: len(msgs)}, nil
				},
				transcript: func(_ context.Context, by consultations.Caller, id string) (consultations.TranscriptView, error) {
					read = by
					return consultations.TranscriptView{ConsultationID: id}, nil
				},
			}
			h := newAPI(t, httpapi.Options{Consultations: cons})
			send := func(method, body string) *httptest.ResponseRecorder {
				r := browser(method, "/api/v1/consultations/c-1/transcript", body, aliceSession)
				if c.authz != "" {
					r.Header.Set("Authorization", c.authz)
				}
				return serve(h, r)
			}
			var s consultations.SavedTranscript
			decodeBody(t, send("POST", `{"messages":[{"from":"patient","name":"Bob","text":"hello","at":"2026-11-24T10:00:00Z"}]}`), http.StatusOK, &s)
			if s.ConsultationID != "c-1" || s.Messages != 1 {
				t.Errorf("answered %+v", s)
			}
			decodeBody(t, send("GET", ""), http.StatusOK, &struct{}{})
			if saved != c.want || read != c.want {
				t.Errorf("saved as %+v, read as %+v, want %+v", saved, read, c.want)
			}
		})
	}
}

func TestSaveTranscriptTooLarge(t *testing.T) {
	const limit = 32 << 20
	cons := &fakeConsultations{checkAccess: func(context.Context, consultations.Caller, string) error { return nil }}
	h := newAPI(t, httpapi.Options{Consultations: cons})
	t.Run("declared", func(t *testing.T) {
		r := request("POST", "/api/v1/consultations/c-1/transcript", `{"messages":[]}`)
		r.ContentLength = limit + 1
		wantError(t, serve(h, r), http.StatusRequestEntityTooLarge, errcode.TooLarge)
	})
	t.Run("streamed", func(t *testing.T) {
		r := request("POST", "/api/v1/consultations/c-1/transcript", "")
		r.Body = io.NopCloser(spaces(limit + 1))
		r.ContentLength = -1
		wantError(t, serve(h, r), http.StatusRequestEntityTooLarge, errcode.TooLarge)
	})
}
