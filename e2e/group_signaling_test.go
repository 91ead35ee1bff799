package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/telemed/telemed/client"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/consultations"
	"github.com/telemed/telemed/protocol"
)

// invite makes an invitation through the HTTP API, as the dashboard does.
func invite(t *testing.T, a *apiClient, auth map[string]string, consultationID, role, name string) consultations.InvitationView {
	t.Helper()
	var v consultations.InvitationView
	body, _ := json.Marshal(map[string]string{"role": role, "name": name})
	if resp := a.do("POST", "/api/v1/consultations/"+consultationID+"/invitations", string(body), auth, &v); resp.StatusCode != http.StatusCreated {
		t.Fatalf("invite %s %q: status %d", role, name, resp.StatusCode)
	}
	return v
}

// expectRefused reads until the server closes the connection, and checks the error it sent first.
func expectRefused(t *testing.T, r *raw, code, words string) {
	t.Helper()
	m := r.readType(t, protocol.TypeError)
	if string(m.Code) != code || !strings.Contains(m.Message, words) {
		t.Fatalf("refusal %s %q, want %s saying %q", m.Code, m.Message, code, words)
	}
	if _, closed := r.closed(t); !closed {
		t.Fatal("connection not closed after the refusal")
	}
}

// expectError reads until an error and checks its code; the connection stays open.
func expectError(t *testing.T, r *raw, what, code string) {
	t.Helper()
	if m := r.readType(t, protocol.TypeError); string(m.Code) != code || m.Message == "" {
		t.Fatalf("%s: error %s %q, want %s with words", what, m.Code, m.Message, code)
	}
}

// TestGroupVisitInvitationsAPI checks the invitation endpoints with everything a caller can get
// wrong, each answered with its documented status and code.
func TestGroupVisitInvitationsAPI(t *testing.T) {
	e := startServer(t, serverOptions())
	ctx := context.Background()
	a := newAPIClient(t, e)
	token, err := e.svc.Accounts.CreateAPIToken(ctx, e.provider.ID, "test")
	if err != nil {
		t.Fatal(err)
	}
	auth := map[string]string{"Authorization": "Bearer " + token}
	c := e.newConsultation(t, time.Hour)
	path := "/api/v1/consultations/" + c.ID + "/invitations"

	v := invite(t, a, auth, c.ID, "guest", "  Marta (Spanish interpreter) ")
	if !strings.HasPrefix(v.ID, "i_") || v.Name != "Marta (Spanish interpreter)" || v.Role != consult.RoleGuest ||
		!v.ExpiresAt.Equal(c.ExpiresAt) || v.RevokedAt != nil || !strings.Contains(v.JoinURL, "#t="+c.ID+".guest.") {
		t.Fatalf("invitation = %+v", v)
	}
	// The provider's link may invite too, as the call page does.
	_, _, providerToken, _ := parseLinkT(t, c.StartURL)
	byLink := invite(t, a, map[string]string{"Authorization": "Bearer " + providerToken}, c.ID, "clinician", "Dr Lin")

	for _, bad := range []struct {
		what, body string
		auth       map[string]string
		status     int
		code       string
	}{
		{"unknown role", `{"role":"patient","name":"X"}`, auth, 400, "bad_field"},
		{"no role", `{"name":"X"}`, auth, 400, "bad_field"},
		{"name too long", `{"role":"guest","name":"` + strings.Repeat("é", 81) + `"}`, auth, 400, "bad_field"},
		{"empty name", `{"role":"guest","name":"   "}`, auth, 400, "bad_field"},
		{"control characters", `{"role":"guest","name":"a\u0007b"}`, auth, 400, "bad_field"},
		{"not JSON", `{"role":`, auth, 400, "bad_json"},
		{"unknown field", `{"role":"guest","name":"X","admin":true}`, auth, 400, "bad_json"},
		{"no credentials", `{"role":"guest","name":"X"}`, nil, 401, "unauthenticated"},
		{"the patient's link", `{"role":"guest","name":"X"}`, map[string]string{"Authorization": "Bearer " + tokenOf(t, c.JoinURL)}, 403, "bad_token"},
		{"an invitation's link", `{"role":"guest","name":"X"}`, map[string]string{"Authorization": "Bearer " + tokenOf(t, v.JoinURL)}, 403, "bad_token"},
	} {
		t.Run(bad.what, func(t *testing.T) {
			a := newAPIClient(t, e)
			a.expectError("POST", path, bad.body, bad.auth, bad.status, bad.code)
		})
	}

	// Another provider's consultation is not found, for every endpoint.
	other, err := e.svc.Accounts.AddProvider(ctx, "lin@clinic.example", "Dr Lin", testPassword)
	if err != nil {
		t.Fatal(err)
	}
	otherToken, _ := e.svc.Accounts.CreateAPIToken(ctx, other.ID, "test")
	otherAuth := map[string]string{"Authorization": "Bearer " + otherToken}
	a.expectError("POST", path, `{"role":"guest","name":"X"}`, otherAuth, 404, "not_found")
	a.expectError("GET", path, "", otherAuth, 404, "not_found")
	a.expectError("DELETE", path+"/"+v.ID, "", otherAuth, 404, "not_found")
	a.expectError("DELETE", path+"/i_nothing", "", auth, 404, "not_found")

	// The list holds both, oldest first; revoking answers the invitation, twice alike.
	var list struct {
		Invitations []consultations.InvitationView
	}
	a.do("GET", path, "", auth, &list)
	if len(list.Invitations) != 2 || list.Invitations[0].ID != v.ID || list.Invitations[1].ID != byLink.ID {
		t.Fatalf("invitations = %+v", list.Invitations)
	}
	var revoked, again consultations.InvitationView
	if resp := a.do("DELETE", path+"/"+v.ID, "", auth, &revoked); resp.StatusCode != 200 || revoked.RevokedAt == nil {
		t.Fatalf("revoke: %d %+v", resp.StatusCode, revoked)
	}
	a.do("DELETE", path+"/"+v.ID, "", auth, &again)
	if again.RevokedAt == nil || !again.RevokedAt.Equal(*revoked.RevokedAt) {
		t.Fatalf("revoking again = %+v, want the first revocation kept", again)
	}

	// A 21st invitation is one too many; an ended consultation takes none.
	for i := len(list.Invitations); i < consultations.MaxInvitations; i++ {
		invite(t, a, auth, c.ID, "guest", fmt.Sprintf("Guest %d", i))
	}
	a.expectError("POST", path, `{"role":"guest","name":"One more"}`, auth, 400, "bad_field")
	c2 := e.newConsultation(t, time.Hour)
	if _, err := e.svc.Consultations.EndConsultation(ctx, e.provider, "test", c2.ID); err != nil {
		t.Fatal(err)
	}
	a.expectError("POST", "/api/v1/consultations/"+c2.ID+"/invitations", `{"role":"guest","name":"X"}`, auth, 409, "consultation_ended")

	waitAuditHas(t, e, c.ID, consult.AuditInvited, consult.AuditInvitationRevoked)
}

// TestGroupVisitSignaling runs a group visit over raw signaling connections: invited people wait and
// are named as invited, a clinician admits, the call fills at 4 people and a fifth is refused in words,
// media state reaches the others, guests cannot admit, remove or share, and a removed person's link,
// like a revoked invitation's, no longer joins.
func TestGroupVisitSignaling(t *testing.T) {
	e := startServer(t, serverOptions())
	ctx := ctxTimeout(t, 60*time.Second)
	a := newAPIClient(t, e)
	token, _ := e.svc.Accounts.CreateAPIToken(context.Background(), e.provider.ID, "test")
	auth := map[string]string{"Authorization": "Bearer " + token}
	c := e.newConsultation(t, time.Hour)
	interp := invite(t, a, auth, c.ID, "guest", "Marta (interpreter)")
	family := invite(t, a, auth, c.ID, "guest", "Sam (son)")
	gp := invite(t, a, auth, c.ID, "clinician", "Dr Lin (GP)")
	aunt := invite(t, a, auth, c.ID, "guest", "Aunt May")

	prov := dialRaw(t, ctx, e)
	if w := prov.join(t, c.StartURL, ""); w.State != protocol.StateAdmitted {
		t.Fatalf("provider welcome state %q", w.State)
	}
	pat := dialRaw(t, ctx, e)
	pat.join(t, c.JoinURL, "Ada")
	in := dialRaw(t, ctx, e)
	w := in.join(t, interp.JoinURL, "Somebody else")
	if w.State != protocol.StateWaiting || w.You.Name != "Marta (interpreter)" || w.You.Role != "guest" {
		t.Fatalf("interpreter welcome: %s as %s named %q; want waiting, guest, the invitation's name", w.State, w.You.Role, w.You.Name)
	}
	lobby := waitLobby(t, prov, 2)
	if lobby[0].Role != "patient" || lobby[1].Role != "guest" || lobby[1].Name != "Marta (interpreter)" {
		t.Fatalf("lobby = %+v, want the patient and the interpreter, each with their role", lobby)
	}
	in.send(t, `{"type":"admit","peer":"`+lobby[0].ID+`"}`)
	expectError(t, in, "a waiting guest admits", "forbidden")

	doc := dialRaw(t, ctx, e)
	doc.join(t, gp.JoinURL, "")
	lobby = waitLobby(t, prov, 3)
	prov.send(t, `{"type":"admit","peer":"`+lobby[2].ID+`"}`)
	doc.readType(t, protocol.TypeAdmitted)
	// The clinician, now in, sees the waiting room and admits the patient and the interpreter.
	lobby = waitLobby(t, doc, 2)
	doc.send(t, `{"type":"admit","peer":"`+lobby[0].ID+`"}`)
	pat.readType(t, protocol.TypeAdmitted)
	doc.send(t, `{"type":"admit","peer":"`+lobby[1].ID+`"}`)
	adm := in.readType(t, protocol.TypeAdmitted)
	var peers struct{ Peers []protocol.Peer }
	json.Unmarshal(adm.Raw, &peers)
	if len(peers.Peers) != 3 {
		t.Fatalf("the interpreter's peers = %+v, want provider, clinician, patient", peers.Peers)
	}
	for _, p := range peers.Peers {
		if p.Polite || !p.Media.Audio || !p.Media.Video || p.Media.Screen {
			t.Fatalf("peer %+v: the newcomer is impolite towards everyone before it, and media starts on", p)
		}
	}

	// A fifth person is refused at the door, in words.
	fifth := dialRaw(t, ctx, e)
	_, id, tok, _ := parseLinkT(t, family.JoinURL)
	fifth.send(t, fmt.Sprintf(`{"type":"join","version":1,"consultation":%q,"token":%q,"name":"x"}`, id, tok))
	expectRefused(t, fifth, "room_full", "This visit is full: 4 people")

	// Guests cannot admit, remove or share; their media state reaches everyone.
	in.send(t, `{"type":"remove","peer":"`+lobby[0].ID+`"}`)
	expectError(t, in, "a guest removes", "forbidden")
	in.send(t, `{"type":"allow_share","peer":"`+lobby[0].ID+`","allowed":true}`)
	expectError(t, in, "a guest allows sharing", "forbidden")
	in.send(t, `{"type":"media","audio":true,"video":true,"screen":true}`)
	expectError(t, in, "a guest shares unasked", "forbidden")
	in.send(t, `{"type":"media","audio":false,"video":false,"screen":false}`)
	for _, r := range []*raw{prov, doc, pat} {
		m := r.readType(t, protocol.TypeMedia)
		var media protocol.Media
		json.Unmarshal(m.Raw, &media)
		if media.Peer != w.You.ID || media.Audio || media.Video || media.Screen {
			t.Fatalf("media = %s, want the interpreter's camera and microphone off", m.Raw)
		}
	}
	// No one removes the provider. (Before the removal below: reading up to this error would skip
	// the peer_left that removal sends.)
	doc.send(t, `{"type":"remove","peer":"`+prov.you(t).ID+`"}`)
	expectError(t, doc, "the clinician removes the provider", "forbidden")
	prov.send(t, `{"type":"remove","peer":"`+w.You.ID+`","id":5}`)

	// The provider removed the interpreter: they are told and let go, the others see them leave.
	in.readType(t, protocol.TypeRemoved)
	if code, _ := in.closed(t); code != websocket.StatusNormalClosure {
		t.Fatalf("removed person's socket closed with %v, want 1000", code)
	}
	for _, r := range []*raw{prov, doc, pat} {
		m := r.readType(t, protocol.TypePeerLeft)
		if !strings.Contains(string(m.Raw), `"reason":"removed"`) {
			t.Fatalf("peer_left = %s, want reason removed", m.Raw)
		}
	}
	again := dialRaw(t, ctx, e)
	_, id, tok, _ = parseLinkT(t, interp.JoinURL)
	again.send(t, fmt.Sprintf(`{"type":"join","version":1,"consultation":%q,"token":%q,"name":"x"}`, id, tok))
	expectRefused(t, again, "bad_token", "You were removed from this consultation")

	// Now the family member fits; revoking his invitation over HTTP removes him at once.
	fam := dialRaw(t, ctx, e)
	fw := fam.join(t, family.JoinURL, "")
	waitLobby(t, doc, 1)
	doc.send(t, `{"type":"admit","peer":"`+fw.You.ID+`"}`)
	fam.readType(t, protocol.TypeAdmitted)
	a.do("DELETE", "/api/v1/consultations/"+c.ID+"/invitations/"+family.ID, "", auth, nil)
	fam.readType(t, protocol.TypeRemoved)
	prov.readType(t, protocol.TypePeerLeft)
	fam2 := dialRaw(t, ctx, e)
	_, id, tok, _ = parseLinkT(t, family.JoinURL)
	fam2.send(t, fmt.Sprintf(`{"type":"join","version":1,"consultation":%q,"token":%q,"name":"x"}`, id, tok))
	expectRefused(t, fam2, "bad_token", "invitation was revoked")

	// The clinician lets the aunt in and then allows her to share; the patient, removed, cannot return.
	au := dialRaw(t, ctx, e)
	aw := au.join(t, aunt.JoinURL, "")
	waitLobby(t, doc, 1)
	doc.send(t, `{"type":"admit","peer":"`+aw.You.ID+`"}`)
	au.readType(t, protocol.TypeAdmitted)
	doc.send(t, `{"type":"allow_share","peer":"`+aw.You.ID+`","allowed":true}`)
	if m := au.readType(t, protocol.TypeShareAllowed); !strings.Contains(string(m.Raw), `"allowed":true`) {
		t.Fatalf("share_allowed = %s", m.Raw)
	}
	au.send(t, `{"type":"media","audio":true,"video":true,"screen":true}`)
	if m := prov.readType(t, protocol.TypeMedia); !strings.Contains(string(m.Raw), `"screen":true`) {
		t.Fatalf("media = %s, want the aunt sharing", m.Raw)
	}
	doc.send(t, `{"type":"remove","peer":"`+pat.you(t).ID+`"}`)
	pat.readType(t, protocol.TypeRemoved)
	pat2 := dialRaw(t, ctx, e)
	_, id, tok, _ = parseLinkT(t, c.JoinURL)
	pat2.send(t, fmt.Sprintf(`{"type":"join","version":1,"consultation":%q,"token":%q,"name":"Ada"}`, id, tok))
	expectRefused(t, pat2, "bad_token", "You were removed")

	waitAuditHas(t, e, c.ID, consult.AuditRemoved, consult.AuditInvitationRevoked)
}

func parseLinkT(t *testing.T, link string) (wsURL, id, token string, err error) {
	t.Helper()
	wsURL, id, token, err = client.ParseLink(link)
	if err != nil {
		t.Fatal(err)
	}
	return wsURL, id, token, nil
}

func tokenOf(t *testing.T, link string) string {
	_, _, token, _ := parseLinkT(t, link)
	return token
}

// waitLobby reads lobby updates until one lists n people waiting, and returns it.
func waitLobby(t *testing.T, r *raw, n int) []protocol.Waiting {
	t.Helper()
	for {
		m := r.readType(t, protocol.TypeLobby)
		if len(m.Waiting) == n {
			return m.Waiting
		}
	}
}

// waitAuditHas waits until the consultation's audit trail holds each of the actions.
func waitAuditHas(t *testing.T, e *env, consultationID string, actions ...string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		trail, err := e.svc.Consultations.AuditTrail(context.Background(), consultationID)
		if err != nil {
			t.Fatal(err)
		}
		var have []string
		for _, a := range trail {
			have = append(have, a.Action)
		}
		missing := slices.DeleteFunc(slices.Clone(actions), func(a string) bool { return slices.Contains(have, a) })
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit trail %v lacks %v", have, missing)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
