package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/telemed/telemed/client"
	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/consultations"
)

type apiClient struct {
	t    *testing.T
	base string
	http *http.Client
}

func newAPIClient(t *testing.T, e *env) *apiClient {
	jar, _ := cookiejar.New(nil)
	return &apiClient{t: t, base: e.srv.BaseURL(), http: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

// do sends a request and decodes the JSON answer into out (if not nil), returning the response.
func (a *apiClient) do(method, path, body string, header map[string]string, out any) *http.Response {
	a.t.Helper()
	req, _ := http.NewRequest(method, a.base+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			a.t.Fatalf("%s %s: answer %q is not JSON: %v", method, path, data, err)
		}
	}
	return resp
}

type apiError struct {
	Error struct{ Code, Message string }
}

func (a *apiClient) expectError(method, path, body string, header map[string]string, status int, code string) {
	a.t.Helper()
	var e apiError
	resp := a.do(method, path, body, header, &e)
	if resp.StatusCode != status || e.Error.Code != code || e.Error.Message == "" {
		a.t.Fatalf("%s %s %s: %d %+v, want %d %s with a message", method, path, body, resp.StatusCode, e, status, code)
	}
}

func TestAPI(t *testing.T) {
	e := startServer(t, serverOptions())
	a := newAPIClient(t, e)

	if resp := a.do("GET", "/healthz", "", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}
	var ready map[string]string
	if resp := a.do("GET", "/readyz", "", nil, &ready); resp.StatusCode != 200 || ready["status"] != "ready" {
		t.Fatalf("readyz: %d %v, want 200 ready", resp.StatusCode, ready)
	}
	resp := a.do("GET", "/", "", nil, nil)
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("security headers missing: %v", resp.Header)
	}
	for _, p := range []string{"/", "/login", "/setup", "/c/c_anything", "/static/js/protocol.js", "/static/css/app.css"} {
		if resp := a.do("GET", p, "", nil, nil); resp.StatusCode != 200 {
			t.Errorf("GET %s: %d", p, resp.StatusCode)
		}
	}
	a.expectError("GET", "/api/v1/nothing", "", nil, 404, "not_found")
	for _, p := range []string{"/static/", "/static/js/", "/static/css"} {
		if resp := a.do("GET", p, "", nil, nil); resp.StatusCode != 404 {
			t.Errorf("GET %s: %d, want 404, no listing", p, resp.StatusCode)
		}
	}
	a.expectError("PUT", "/api/v1/session", "", nil, 405, "method_not_allowed")
	if resp := a.do("PUT", "/api/v1/session", "", nil, nil); resp.Header.Get("Allow") != "POST, DELETE" {
		t.Errorf("PUT /api/v1/session: Allow %q, want \"POST, DELETE\"", resp.Header.Get("Allow"))
	}
	a.expectError("POST", "/api/v1/session", `{"email":"`+strings.Repeat("x", 64<<10)+`"}`, nil, 413, "too_large")
	a.expectError("GET", "/api/v1/me", "", nil, 401, "unauthenticated")

	// Sign in.
	a.expectError("POST", "/api/v1/session", `{"email":"grace@clinic.example","password":"wrong password!!"}`, nil, 401, "bad_credentials")
	a.expectError("POST", "/api/v1/session", `{"email":"nobody@clinic.example","password":"wrong password!!"}`, nil, 401, "bad_credentials")
	a.expectError("POST", "/api/v1/session", `{"email":`, nil, 400, "bad_json")
	// Login CSRF: another site's form (text/plain) or script may not sign the browser in.
	a.expectError("POST", "/api/v1/session", `{"email":"grace@clinic.example","password":"`+testPassword+`"}`,
		map[string]string{"Content-Type": "text/plain", "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, 403, "bad_origin")
	a.expectError("POST", "/api/v1/session", `{"email":"grace@clinic.example","password":"`+testPassword+`"}`,
		map[string]string{"Origin": "https://evil.example"}, 403, "bad_origin")
	resp = a.do("POST", "/api/v1/session", `{"email":"grace@clinic.example","password":"`+testPassword+`"}`, nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("sign in: %d", resp.StatusCode)
	}
	cookie := resp.Header.Get("Set-Cookie")
	if !strings.Contains(cookie, "HttpOnly") || !strings.Contains(cookie, "SameSite=Lax") || strings.Contains(cookie, "Secure") {
		t.Fatalf("session cookie %q: want HttpOnly, SameSite=Lax, not Secure over plain HTTP", cookie)
	}
	var me struct{ Email, Name string }
	if a.do("GET", "/api/v1/me", "", nil, &me); me.Email != "grace@clinic.example" {
		t.Fatalf("me = %+v", me)
	}

	// Cookie-authenticated writes must come from our own pages.
	a.expectError("POST", "/api/v1/consultations", `{}`, map[string]string{"Origin": "https://evil.example"}, 403, "bad_origin")
	a.expectError("POST", "/api/v1/consultations", `{}`, map[string]string{"Content-Type": "text/plain"}, 403, "bad_origin")
	var created consultations.ConsultationView
	if resp := a.do("POST", "/api/v1/consultations", `{"title":"Follow-up","expires_in":"2h"}`, map[string]string{"Origin": e.srv.BaseURL()}, &created); resp.StatusCode != 201 {
		t.Fatalf("create with session: %d", resp.StatusCode)
	}
	if created.Title != "Follow-up" || created.Status != "open" || created.ExpiresAt.Sub(created.CreatedAt) != 2*time.Hour {
		t.Fatalf("created = %+v", created)
	}
	a.expectError("POST", "/api/v1/consultations", `{"expires_in":"forever"}`, nil, 400, "bad_field")
	a.expectError("POST", "/api/v1/consultations", `{"expires_in":"1000h"}`, nil, 400, "bad_field")
	a.expectError("POST", "/api/v1/consultations", `{"title":"`+strings.Repeat("x", 201)+`"}`, nil, 400, "bad_field")
	a.expectError("POST", "/api/v1/consultations", `{"colour":"blue"}`, nil, 400, "bad_json")

	var list struct {
		Consultations []consultations.ConsultationView
	}
	if a.do("GET", "/api/v1/consultations", "", nil, &list); len(list.Consultations) != 1 || list.Consultations[0].ID != created.ID {
		t.Fatalf("list = %+v", list)
	}

	// An API token acts as its provider, without a cookie or an Origin check.
	token, err := e.svc.Accounts.CreateAPIToken(context.Background(), e.provider.ID, "ehr")
	if err != nil {
		t.Fatal(err)
	}
	ehr := &apiClient{t: t, base: a.base, http: &http.Client{Timeout: 10 * time.Second}}
	var raw map[string]any
	if resp := ehr.do("POST", "/api/v1/consultations", "", map[string]string{"Authorization": "Bearer " + token}, &raw); resp.StatusCode != 201 {
		t.Fatalf("create with API token: %d %v", resp.StatusCode, raw)
	}
	for _, k := range []string{"id", "start_url", "join_url", "expires_at"} {
		if s, _ := raw[k].(string); s == "" {
			t.Fatalf("answer %v lacks %q", raw, k)
		}
	}
	if _, err := time.Parse(time.RFC3339, raw["expires_at"].(string)); err != nil {
		t.Fatalf("expires_at %v is not RFC 3339", raw["expires_at"])
	}
	if !strings.HasPrefix(raw["join_url"].(string), e.srv.BaseURL()+"/c/"+raw["id"].(string)+"#t=") {
		t.Fatalf("join_url %v does not point at this server", raw["join_url"])
	}
	ehr.expectError("GET", "/api/v1/me", "", map[string]string{"Authorization": "Bearer tm_forged"}, 401, "unauthenticated")
	ehr.expectError("GET", "/api/v1/me", "", map[string]string{"Authorization": "Basic abc"}, 401, "unauthenticated")

	// Another provider sees none of it.
	other, err := e.svc.Accounts.AddProvider(context.Background(), "other@clinic.example", "Dr Other", testPassword)
	if err != nil {
		t.Fatal(err)
	}
	otherToken, _ := e.svc.Accounts.CreateAPIToken(context.Background(), other.ID, "x")
	ehr.expectError("GET", "/api/v1/consultations/"+created.ID, "", map[string]string{"Authorization": "Bearer " + otherToken}, 404, "not_found")
	ehr.expectError("POST", "/api/v1/consultations/"+created.ID+"/end", "", map[string]string{"Authorization": "Bearer " + otherToken}, 404, "not_found")

	// Ending a consultation disconnects who is in it, and its links stop working.
	ctx := ctxTimeout(t, 20*time.Second)
	patient := mustJoin(t, ctx, client.Config{Link: created.JoinURL, Name: "Ada", NoReconnect: true})
	var ended consultations.ConsultationView
	if resp := a.do("POST", "/api/v1/consultations/"+created.ID+"/end", "", nil, &ended); resp.StatusCode != 200 || ended.Status != "ended" {
		t.Fatalf("end: %d %+v", resp.StatusCode, ended)
	}
	if err := patient.WaitAdmitted(ctx); err == nil || !strings.Contains(err.Error(), string(errcode.Ended)) {
		t.Fatalf("patient in an ended consultation: %v, want consultation_ended", err)
	}
	_, err = client.Join(ctx, client.Config{Link: created.JoinURL, Name: "Ada", API: loopbackAPI()})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != errcode.Ended {
		t.Fatalf("join an ended consultation: %v, want consultation_ended", err)
	}

	// Sign out.
	if resp := a.do("DELETE", "/api/v1/session", "", nil, nil); resp.StatusCode != 204 {
		t.Fatalf("sign out: %d", resp.StatusCode)
	}
	a.expectError("GET", "/api/v1/me", "", nil, 401, "unauthenticated")
}

// TestSetupTokenOnce sends 20 setups with the one token at once, each for another email: exactly one
// account is created, and every other request is told the setup link was already used.
func TestSetupTokenOnce(t *testing.T) {
	fresh := startServerWithoutProvider(t)
	token, err := fresh.Services().Accounts.SetupToken(context.Background())
	if err != nil || token == "" {
		t.Fatalf("setup token: %q %v", token, err)
	}
	const n = 20
	statuses := make([]int, n)
	codes := make([]string, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf(`{"token":%q,"email":"dr%d@clinic.example","name":"Dr %d","password":%q}`, token, i, i, testPassword)
			req, _ := http.NewRequest("POST", fresh.BaseURL()+"/api/v1/setup", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			<-start
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Errorf("setup %d: %v", i, err)
				return
			}
			defer resp.Body.Close()
			var e apiError
			_ = json.NewDecoder(resp.Body).Decode(&e)
			statuses[i], codes[i] = resp.StatusCode, e.Error.Code
		}()
	}
	close(start)
	wg.Wait()
	created := 0
	for i := range n {
		switch {
		case statuses[i] == 201:
			created++
		case statuses[i] != 403 || codes[i] != "bad_token":
			t.Errorf("setup %d: %d %q, want 201 or 403 bad_token", i, statuses[i], codes[i])
		}
	}
	if created != 1 {
		t.Errorf("%d of %d parallel setups created an account, want exactly 1", created, n)
	}
	accounts := 0
	for i := range n {
		if _, err := fresh.Services().Accounts.ProviderByEmail(context.Background(), fmt.Sprintf("dr%d@clinic.example", i)); err == nil {
			accounts++
		}
	}
	if accounts != 1 {
		t.Errorf("%d accounts stored after %d parallel setups, want 1", accounts, n)
	}
}

func TestFirstRunSetup(t *testing.T) {
	fresh := startServerWithoutProvider(t)
	a := &apiClient{t: t, base: fresh.BaseURL(), http: &http.Client{Timeout: 10 * time.Second}}
	var needed struct{ Needed bool }
	if a.do("GET", "/api/v1/setup", "", nil, &needed); !needed.Needed {
		t.Fatal("a server without providers should need setup")
	}
	token, err := fresh.Services().Accounts.SetupToken(context.Background())
	if err != nil || token == "" {
		t.Fatalf("setup token: %q %v", token, err)
	}
	body := `{"token":"%s","email":"first@clinic.example","name":"Dr First","password":"` + testPassword + `"}`
	a.expectError("POST", "/api/v1/setup", strings.Replace(body, "%s", "wrong", 1), nil, 403, "bad_token")
	a.expectError("POST", "/api/v1/setup", strings.Replace(strings.Replace(body, "%s", token, 1), testPassword, "short", 1), nil, 400, "weak_password")
	resp := a.do("POST", "/api/v1/setup", strings.Replace(body, "%s", token, 1), nil, nil)
	if resp.StatusCode != 201 || !strings.Contains(resp.Header.Get("Set-Cookie"), "telemed_session=") {
		t.Fatalf("setup: %d, cookie %q", resp.StatusCode, resp.Header.Get("Set-Cookie"))
	}
	a.expectError("POST", "/api/v1/setup", strings.Replace(body, "%s", token, 1), nil, 403, "bad_token")
	if a.do("GET", "/api/v1/setup", "", nil, &needed); needed.Needed {
		t.Fatal("setup still needed after the first account")
	}
	if tok, _ := fresh.Services().Accounts.SetupToken(context.Background()); tok != "" {
		t.Fatal("setup token still offered after setup")
	}
}
