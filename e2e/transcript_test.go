package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/consultations"
	"github.com/telemed/telemed/internal/server"
)

// linkToken is the token in a consultation link's fragment.
func linkToken(t *testing.T, link string) string {
	t.Helper()
	_, token, ok := strings.Cut(link, "#t=")
	if !ok || token == "" {
		t.Fatalf("link %q has no token", link)
	}
	return token
}

func bearer(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token}
}

// transcriptBody is a save request of n messages with the given text, alternating patient and provider.
func transcriptBody(n int, text string) string {
	var b strings.Builder
	b.WriteString(`{"messages":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		from, name := "patient", "Ada"
		if i%2 == 1 {
			from, name = "provider", "Dr Grace Hopper"
		}
		fmt.Fprintf(&b, `{"from":%q,"name":%q,"text":%q,"at":"2026-11-24T10:00:%02d.123Z"}`, from, name, text, i%60)
	}
	b.WriteString(`]}`)
	return b.String()
}

func TestTranscript(t *testing.T) {
	var offset atomic.Int64
	e := startServer(t, server.Options{Now: func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }})
	a := &apiClient{t: t, base: e.srv.BaseURL(), http: &http.Client{Timeout: 60 * time.Second}}
	c := e.newConsultation(t, time.Hour)
	path := "/api/v1/consultations/" + c.ID + "/transcript"
	providerLink := bearer(linkToken(t, c.StartURL))
	patientLink := bearer(linkToken(t, c.JoinURL))

	// Nothing saved yet.
	a.expectError("GET", path, "", providerLink, 404, "not_found")

	// The provider's page saves with its link token, and reads the transcript back.
	body := `{"messages":[
		{"from":"patient","name":"Ada","text":"Hello","at":"2026-11-24T10:00:00.123Z"},
		{"from":"provider","name":"Dr Grace Hopper","text":"  Take 5 mg of <b>amlodipine</b> once a day\n","at":"2026-11-24T11:00:01+01:00"},
		{"from":"patient","name":"","text":"Merci 👋","at":"2026-11-24T10:00:02.123456789Z"}]}`
	var saved map[string]any
	if resp := a.do("POST", path, body, providerLink, &saved); resp.StatusCode != 200 {
		t.Fatalf("save with the provider link: %d %v", resp.StatusCode, saved)
	}
	if saved["consultation_id"] != c.ID || saved["messages"] != float64(3) || len(saved) != 3 {
		t.Fatalf("save answered %v", saved)
	}
	savedAt, err := time.Parse(time.RFC3339, saved["saved_at"].(string))
	if err != nil || time.Since(savedAt) > time.Minute || time.Until(savedAt) > time.Second {
		t.Fatalf("saved_at %v: %v", saved["saved_at"], err)
	}
	var got consultations.TranscriptView
	if resp := a.do("GET", path, "", providerLink, &got); resp.StatusCode != 200 {
		t.Fatalf("read with the provider link: %d", resp.StatusCode)
	}
	want := []consultations.TranscriptMessage{
		{From: "patient", Name: "Ada", Text: "Hello", At: "2026-11-24T10:00:00.123Z"},
		{From: "provider", Name: "Dr Grace Hopper", Text: "Take 5 mg of <b>amlodipine</b> once a day", At: "2026-11-24T10:00:01Z"},
		{From: "patient", Name: "", Text: "Merci 👋", At: "2026-11-24T10:00:02.123456789Z"},
	}
	if got.ConsultationID != c.ID || got.SavedBy != "provider link" || !got.SavedAt.Equal(savedAt) || fmt.Sprint(got.Messages) != fmt.Sprint(want) {
		t.Fatalf("transcript = %+v\nwant messages %+v, saved by the provider link at %v", got, want, savedAt)
	}

	// Saving again replaces it.
	if resp := a.do("POST", path, transcriptBody(1, "Only this"), providerLink, &saved); resp.StatusCode != 200 || saved["messages"] != float64(1) {
		t.Fatalf("save again: %d %v", resp.StatusCode, saved)
	}
	a.do("GET", path, "", providerLink, &got)
	if len(got.Messages) != 1 || got.Messages[0].Text != "Only this" {
		t.Fatalf("after saving again: %+v, want the new transcript only", got)
	}

	// The provider's API token works too, and names the provider in the audit trail.
	token, err := e.svc.Accounts.CreateAPIToken(context.Background(), e.provider.ID, "ehr")
	if err != nil {
		t.Fatal(err)
	}
	if resp := a.do("POST", path, transcriptBody(2, "Via the EHR"), bearer(token), &saved); resp.StatusCode != 200 || saved["messages"] != float64(2) {
		t.Fatalf("save with an API token: %d %v", resp.StatusCode, saved)
	}
	if resp := a.do("GET", path, "", bearer(token), &got); resp.StatusCode != 200 || got.SavedBy != e.provider.ID+" (api)" || len(got.Messages) != 2 {
		t.Fatalf("read with an API token: %d %+v", resp.StatusCode, got)
	}
	// An empty transcript is allowed.
	if resp := a.do("POST", path, `{"messages":[]}`, providerLink, &saved); resp.StatusCode != 200 || saved["messages"] != float64(0) {
		t.Fatalf("save an empty transcript: %d %v", resp.StatusCode, saved)
	}
	if a.do("GET", path, "", providerLink, &got); got.Messages == nil || len(got.Messages) != 0 {
		t.Fatalf("empty transcript read back as %+v, want messages: []", got)
	}

	// Every save is audited, with a count and never the text.
	trail, err := e.svc.Consultations.AuditTrail(context.Background(), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	var saves []string
	for _, ev := range trail {
		if ev.Action == consult.AuditTranscriptSaved {
			saves = append(saves, ev.Actor+": "+ev.Detail)
		}
		if strings.Contains(ev.Detail, "Hello") || strings.Contains(ev.Detail, "amlodipine") {
			t.Errorf("audit detail %q holds the chat's text", ev.Detail)
		}
	}
	wantSaves := []string{"provider link: 3 messages", "provider link: 1 message", e.provider.ID + " (api): 2 messages", "provider link: 0 messages"}
	if fmt.Sprint(saves) != fmt.Sprint(wantSaves) {
		t.Fatalf("transcript.saved audit entries = %q, want %q", saves, wantSaves)
	}

	// Who may not.
	one := transcriptBody(1, "Hi")
	for _, method := range []string{"POST", "GET"} {
		b := ""
		if method == "POST" {
			b = one
		}
		a.expectError(method, path, b, patientLink, 403, "bad_token")
		a.expectError(method, path, b, nil, 401, "unauthenticated")
		a.expectError(method, path, b, bearer("tm_forged"), 401, "unauthenticated")
		a.expectError(method, path, b, bearer(linkToken(t, c.StartURL)+"x"), 403, "bad_token")
		other := e.newConsultation(t, time.Hour)
		a.expectError(method, path, b, bearer(linkToken(t, other.StartURL)), 403, "bad_token")
	}
	var refusal apiError
	a.do("POST", path, one, patientLink, &refusal)
	if refusal.Error.Message != "only the provider can save the transcript" {
		t.Fatalf("patient refused with %q", refusal.Error.Message)
	}
	otherProvider, err := e.svc.Accounts.AddProvider(context.Background(), "other@clinic.example", "Dr Other", testPassword)
	if err != nil {
		t.Fatal(err)
	}
	otherToken, _ := e.svc.Accounts.CreateAPIToken(context.Background(), otherProvider.ID, "x")
	a.expectError("POST", path, one, bearer(otherToken), 404, "not_found")
	a.expectError("GET", path, "", bearer(otherToken), 404, "not_found")
	a.expectError("POST", "/api/v1/consultations/c_nothing/transcript", one, bearer(token), 404, "not_found")

	// Bad input is refused field by field, naming the message.
	for _, tc := range []struct{ name, body, code, mention string }{
		{"empty text", `{"messages":[{"from":"patient","name":"Ada","text":"ok","at":"2026-11-24T10:00:00Z"},{"from":"patient","name":"Ada","text":"   ","at":"2026-11-24T10:00:00Z"}]}`, "bad_field", "messages[1].text"},
		{"bad from", `{"messages":[{"from":"doctor","name":"Ada","text":"Hi","at":"2026-11-24T10:00:00Z"}]}`, "bad_field", "messages[0].from"},
		{"bad at", `{"messages":[{"from":"patient","name":"Ada","text":"Hi","at":"2026-11-24T10:00:00Z"},{"from":"patient","name":"Ada","text":"Hi","at":"yesterday"}]}`, "bad_field", "messages[1].at"},
		{"at without a zone", `{"messages":[{"from":"patient","name":"Ada","text":"Hi","at":"2026-11-24T10:00:00"}]}`, "bad_field", "messages[0].at"},
		{"missing at", `{"messages":[{"from":"patient","name":"Ada","text":"Hi"}]}`, "bad_field", "messages[0].at"},
		{"long name", `{"messages":[{"from":"patient","name":"` + strings.Repeat("é", 81) + `","text":"Hi","at":"2026-11-24T10:00:00Z"}]}`, "bad_field", "messages[0].name"},
		{"long text", `{"messages":[{"from":"patient","name":"Ada","text":"` + strings.Repeat("ü", 4001) + `","at":"2026-11-24T10:00:00Z"}]}`, "bad_field", "messages[0].text"},
		{"too many", transcriptBody(5001, "Hi"), "bad_field", "5000"},
		{"no messages", `{}`, "bad_field", "messages"},
		{"empty body", ``, "bad_field", "messages"},
		{"unknown field", `{"messages":[{"from":"patient","name":"Ada","text":"Hi","at":"2026-11-24T10:00:00Z","colour":"blue"}]}`, "bad_json", "colour"},
		{"not JSON", `{"messages":[`, "bad_json", ""},
	} {
		var e apiError
		resp := a.do("POST", path, tc.body, providerLink, &e)
		if resp.StatusCode != 400 || e.Error.Code != tc.code || !strings.Contains(e.Error.Message, tc.mention) {
			t.Errorf("%s: %d %+v, want 400 %s mentioning %q", tc.name, resp.StatusCode, e, tc.code, tc.mention)
		}
	}
	a.do("GET", path, "", providerLink, &got)
	if len(got.Messages) != 0 || got.SavedBy != "provider link" {
		t.Fatalf("a refused save changed the transcript: %+v", got)
	}

	// The largest transcript allowed fits (5000 messages of 4000 characters); a body over 32 MiB does not.
	if testing.Short() {
		t.Log("-short: skipping the largest transcript")
	} else {
		big := transcriptBody(5000, strings.Repeat("x", 4000))
		if resp := a.do("POST", path, big, bearer(token), &saved); resp.StatusCode != 200 || saved["messages"] != float64(5000) {
			t.Fatalf("save 5000 messages of 4000 characters (%d bytes): %d %v", len(big), resp.StatusCode, saved)
		}
		a.expectError("POST", path, transcriptBody(5000, strings.Repeat("x", 7000)), bearer(token), 413, "too_large")
	}

	// A provider link stops working once the consultation ends or the link expires; the provider's own
	// credentials still work.
	if _, err := e.svc.Consultations.EndConsultation(context.Background(), e.provider, "test", c.ID); err != nil {
		t.Fatal(err)
	}
	a.expectError("POST", path, one, providerLink, 403, "bad_token")
	if resp := a.do("POST", path, one, bearer(token), nil); resp.StatusCode != 200 {
		t.Fatalf("save for an ended consultation with an API token: %d", resp.StatusCode)
	}
	later := e.newConsultation(t, time.Hour)
	offset.Store(int64(2 * time.Hour))
	a.expectError("POST", "/api/v1/consultations/"+later.ID+"/transcript", one, bearer(linkToken(t, later.StartURL)), 403, "bad_token")
}

// A signed-in provider saves from the dashboard's pages: the session cookie works, under the same
// CSRF rules as every other write.
func TestTranscriptWithSession(t *testing.T) {
	e := startServer(t, serverOptions())
	a := newAPIClient(t, e)
	c := e.newConsultation(t, time.Hour)
	path := "/api/v1/consultations/" + c.ID + "/transcript"
	if resp := a.do("POST", "/api/v1/session", `{"email":"grace@clinic.example","password":"`+testPassword+`"}`, nil, nil); resp.StatusCode != 200 {
		t.Fatalf("sign in: %d", resp.StatusCode)
	}
	body := transcriptBody(2, "Hi")
	a.expectError("POST", path, body, map[string]string{"Origin": "https://evil.example"}, 403, "bad_origin")
	a.expectError("POST", path, body, map[string]string{"Content-Type": "text/plain"}, 403, "bad_origin")
	var saved map[string]any
	if resp := a.do("POST", path, body, map[string]string{"Origin": e.srv.BaseURL()}, &saved); resp.StatusCode != 200 || saved["messages"] != float64(2) {
		t.Fatalf("save with a session: %d %v", resp.StatusCode, saved)
	}
	var got consultations.TranscriptView
	if resp := a.do("GET", path, "", nil, &got); resp.StatusCode != 200 || got.SavedBy != e.provider.ID || len(got.Messages) != 2 {
		t.Fatalf("read with a session: %d %+v", resp.StatusCode, got)
	}
}
