package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/consultations"
	"github.com/telemed/telemed/internal/server"
	"github.com/telemed/telemed/protocol"
)

// The connection test ("Test my connection", web/static/js/precall.js) in the NAT lab of nat_test.go:
// a Chromium behind natA, as a patient on the device check page, tests its way to telemed's STUN/TURN
// server on "the internet", first as the network is, then with natA dropping every UDP packet to the
// server, as many corporate and hotel networks do.

const (
	// precallRoleEnv selects the part a helper process of TestPrecallNAT plays: browser or quality.
	precallRoleEnv = "TELEMED_PRECALL_ROLE"
	// precallResultPrefix starts the one line in which such a helper reports, as JSON.
	precallResultPrefix = "PRECALL-RESULT "
)

// precallOutcome is what the browser helper read off the page once the test was done.
type precallOutcome struct {
	Error    string `json:"error,omitempty"`
	Verdict  string `json:"verdict"` // #connection-result's data-verdict
	Words    string `json:"words"`
	Figures  string `json:"figures"`
	Saved    string `json:"saved"` // "true" once the result was posted to /quality
	Progress string `json:"progress"`
	// Summary is the kind of the report postCallQuality kept, when the helper was asked to send one.
	Summary string `json:"summary,omitempty"`
}

// precallSummaryEnv asks the browser helper to send an end-of-call summary too, as call.js does.
const precallSummaryEnv = "TELEMED_PRECALL_SUMMARY"

// TestPrecallNAT runs the page's connection test from behind a NAT: with the network open it reports
// good (a public address, the relay over UDP and TCP, a fast loop through it); with UDP to the server
// dropped by iptables it reports UDP blocked and a working relay over TCP. Both results are kept, and
// the provider reads them at GET /api/v1/consultations/{id}/quality, without the patient's address.
// It needs root, ip, iptables and Chromium; without them it skips, except in CI.
func TestPrecallNAT(t *testing.T) {
	chromium := findChromium(t)
	lab := newNATLab(t)
	bin := buildTelemed(t)
	lab.build()

	data, c := newLabConsultation(t, bin, natBaseURL)
	server := lab.start(t, "server", lab.inet, nil, bin, "serve", "--http", natHTTPAddr, "--base-url", natBaseURL,
		"--data", data, "--log-level", "debug",
		"--turn-addr", "0.0.0.0:3478", "--turn-public-ip", natServerIP, "--turn-secret", rand.Text())
	// The NAT test's probe waits for the server, and checks that natA reaches it and nothing behind inet.
	if r := lab.startHelper(t, "probe", lab.peerA, "probe", natUnreachableEnv+"="+natWANB+","+natLANB).wait(t, 20*time.Second); r.Error != "" {
		lab.dump(t, server)
		t.Fatalf("probe: %s", r.Error)
	}

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	browser := func(name string, env ...string) precallOutcome {
		t.Helper()
		env = append(env, precallRoleEnv+"=browser", natLinkEnv+"="+c.JoinURL, "TELEMED_CHROMIUM="+chromium)
		p := lab.start(t, name, lab.peerA, env,
			self, "-test.run=^TestPrecallProcess$", "-test.v", "-test.count=1", "-test.timeout=120s")
		var o precallOutcome
		if err := precallResult(p, 120*time.Second, &o); err != nil || o.Error != "" {
			lab.dump(t, server, p)
			t.Fatalf("%s: %v %s", name, err, o.Error)
		}
		t.Logf("%s: %+v", name, o)
		return o
	}

	open := browser("browser-open")
	if open.Verdict != "good" || open.Saved != "true" || !strings.Contains(open.Words, "good") ||
		!strings.Contains(open.Figures, "yes (IPv4)") || strings.Contains(open.Figures, "blocked") {
		lab.dump(t, server)
		t.Fatalf("open network: %+v; want good, a public address, nothing blocked, and the result kept", open)
	}

	// natA now drops every UDP packet to the server, forwarded from its LAN: STUN, TURN over UDP.
	lab.inNS(lab.natA, lab.iptables, "-I", "FORWARD", "-p", "udp", "-d", natServerIP, "-j", "DROP")
	blocked := browser("browser-udp-dropped", precallSummaryEnv+"=1")
	const words = "UDP is blocked on your network; the call will use the relay over TCP"
	if blocked.Verdict != "udp_blocked" || blocked.Saved != "true" || !strings.Contains(blocked.Words, words) || blocked.Summary != "call" ||
		!strings.Contains(blocked.Figures, "Relay over UDPblocked") || !strings.Contains(blocked.Figures, "Relay over TCPworks") {
		lab.dump(t, server)
		t.Fatalf("UDP dropped: %+v; want %q with the relay over TCP working, the result kept, and the page's summary", blocked, words)
	}

	// The provider reads them, from the other side of the lab, with the provider's link.
	q := lab.start(t, "quality", lab.peerB, []string{precallRoleEnv + "=quality", natLinkEnv + "=" + c.StartURL},
		self, "-test.run=^TestPrecallProcess$", "-test.v", "-test.count=1", "-test.timeout=60s")
	var list struct {
		Reports []consultations.QualityView `json:"reports"`
	}
	var raw json.RawMessage
	if err := precallResult(q, 30*time.Second, &raw); err != nil {
		lab.dump(t, server, q)
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &list); err != nil || len(list.Reports) != 3 {
		t.Fatalf("GET /quality answered %s (%v), want the two tests and the summary", raw, err)
	}
	if r := list.Reports[2]; r.Kind != consult.QualityCall || r.From.Role != consult.RolePatient || r.Call == nil || len(r.Call.Peers) != 1 ||
		r.Call.Peers[0].Path != "relay" || r.Call.Peers[0].OutgoingKbps == nil || *r.Call.Peers[0].OutgoingKbps != 1534 {
		t.Errorf("the summary: %s, want the patient's one peer as postCallQuality sent it", mustJSON(r))
	}
	for i, want := range []struct{ verdict, relay string }{{"good", "udp"}, {"udp_blocked", "tcp"}} {
		r := list.Reports[i]
		if r.Kind != consult.QualityPrecall || r.From.Role != consult.RolePatient || r.Precall == nil ||
			r.Precall.Verdict != want.verdict || r.Precall.Relay != want.relay || *r.Precall.TCP != true || r.Precall.ThroughputKbps == nil {
			t.Errorf("report %d: %s, want a patient's precall test, %s over %s", i, mustJSON(r), want.verdict, want.relay)
		}
	}
	if list.Reports[0].Precall.PublicAddress != "ipv4" || list.Reports[1].Precall.STUN == nil || *list.Reports[1].Precall.STUN {
		t.Errorf("public address families: %s", raw)
	}
	// The patient's addresses, inside natA and outside it, are nowhere in what is kept.
	for _, addr := range []string{natWANA, "10.0.1."} {
		if strings.Contains(string(raw), addr) {
			t.Errorf("GET /quality holds the patient's address %s: %s", addr, raw)
		}
	}
	if t.Failed() || os.Getenv("TELEMED_TEST_LOG") != "" {
		lab.dump(t, server)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// precallResult waits for p to exit and decodes the JSON of its result line into v.
func precallResult(p *natProc, timeout time.Duration, v any) error {
	select {
	case <-p.exited:
	case <-time.After(timeout):
		return fmt.Errorf("%s did not finish within %v", p.name, timeout)
	}
	for _, line := range strings.Split(p.out.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, precallResultPrefix); ok {
			return json.Unmarshal([]byte(rest), v)
		}
	}
	return fmt.Errorf("%s exited (%v) without a result line", p.name, p.err)
}

// TestPrecallProcess is not a test: it is the part TestPrecallNAT's helper processes play inside a
// network namespace, chosen by TELEMED_PRECALL_ROLE. Run directly, it skips.
func TestPrecallProcess(t *testing.T) {
	link := os.Getenv(natLinkEnv)
	switch os.Getenv(precallRoleEnv) {
	case "":
		t.Skip("helper process of TestPrecallNAT; runs only when it sets " + precallRoleEnv)
	case "browser":
		o := precallInBrowser(t, link)
		fmt.Printf("%s%s\n", precallResultPrefix, mustJSON(o))
	case "quality":
		req, _ := http.NewRequest("GET", natBaseURL+"/api/v1/consultations/"+consultationOf(link)+"/quality", nil)
		req.Header.Set("Authorization", "Bearer "+linkToken(t, link))
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /quality: %s %s", resp.Status, body)
		}
		fmt.Printf("%s%s\n", precallResultPrefix, strings.TrimSpace(string(body)))
	}
}

// consultationOf is the consultation id of a link (/c/{id}#t=...).
func consultationOf(link string) string {
	path, _, _ := strings.Cut(link, "#")
	return path[strings.LastIndex(path, "/")+1:]
}

// precallInBrowser opens the link in Chromium, clicks "Test my connection" and reads what the page
// says once the result is kept (or could not be).
func precallInBrowser(t *testing.T, link string) precallOutcome {
	// The page is served from the lab's server address over plain HTTP, which Chromium does not
	// count as a secure context: the device check's camera needs one.
	flags := func(a *chromedp.ExecAllocator) {
		chromedp.Flag("use-fake-ui-for-media-stream", true)(a)
		chromedp.Flag("unsafely-treat-insecure-origin-as-secure", natBaseURL)(a)
	}
	ctx := startBrowser(t, findChromium(t), flags)
	if err := chromedp.Do(ctx, chromedp.Navigate(link)); err != nil {
		t.Fatal(err)
	}
	waitState(t, ctx, "patient", "device-check")
	click(t, ctx, "#test-connection")
	progress := ""
	waitJS(t, ctx, "a step of the test shown", `document.querySelector('#connection-result').textContent.includes('of 4')`, 10*time.Second)
	progress = evalJS[string](t, ctx, `document.querySelector('#connection-result').textContent`)
	waitJS(t, ctx, "the test's result kept", `document.querySelector('#connection-result').dataset.saved`, 90*time.Second)
	o := evalJS[precallOutcome](t, ctx, `(() => {
		const r = document.querySelector('#connection-result');
		return {verdict: r.dataset.verdict || '', saved: r.dataset.saved || '',
			words: (r.querySelector('.connection-words') || r).textContent,
			figures: (r.querySelector('.connection-figures') || {textContent: ''}).textContent};
	})()`)
	o.Progress = progress
	if os.Getenv(precallSummaryEnv) != "" {
		// What call.js does at the end of a call, with a measurement in quality.js's shape.
		o.Summary = evalJS[string](t, ctx, `(async () => {
			const m = await import('/static/js/precall.js');
			const id = decodeURIComponent(location.pathname.split('/').pop());
			const token = decodeURIComponent(location.hash.replace(/^#t=/, ''));
			const peer = m.peerSummary({role: 'provider', name: 'Dr Grace Hopper'},
				{rttMs: 24, lossPct: 0.4, sentLossPct: null, jitterMs: 3, outBitrate: 1534000, localType: 'relay', remoteType: 'relay', word: 'good'});
			const r = await m.postCallQuality(id, token, {duration_s: 95, peers: [peer]});
			return r.kind;
		})()`)
	}
	evalJS[bool](t, ctx, `(() => { const d = document.querySelector('#connection-result details'); if (d) d.open = true; return true })()`)
	screenshot(t, ctx, "precall-"+o.Verdict)
	return o
}

// TestQualityAPI: the connection test's ICE servers and the quality reports through the real
// server, from each kind of caller; and bad input, each refused with its documented error.
func TestQualityAPI(t *testing.T) {
	var offset atomic.Int64
	e := startServer(t, server.Options{Now: func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }})
	a := &apiClient{t: t, base: e.srv.BaseURL(), http: &http.Client{Timeout: 10 * time.Second}}
	c := e.newConsultation(t, time.Hour)
	other := e.newConsultation(t, time.Hour)
	ice, path := "/api/v1/consultations/"+c.ID+"/ice-servers", "/api/v1/consultations/"+c.ID+"/quality"
	patient, provider := bearer(linkToken(t, c.JoinURL)), bearer(linkToken(t, c.StartURL))
	tampered := bearer(strings.Replace(linkToken(t, c.JoinURL), ".patient.", ".provider.", 1))

	// Before joining, the patient's page gets ICE servers with a short TURN credential of its own.
	var servers struct {
		ICEServers []protocol.ICEServer `json:"ice_servers"`
		Policy     string               `json:"ice_transport_policy"`
		ExpiresAt  time.Time            `json:"expires_at"`
	}
	if resp := a.do("GET", ice, "", patient, &servers); resp.StatusCode != 200 {
		t.Fatalf("ice-servers with the patient link: %d", resp.StatusCode)
	}
	urls := mustJSON(servers.ICEServers)
	if len(servers.ICEServers) != 2 || !strings.Contains(urls, `"stun:`) || !strings.Contains(urls, "?transport=udp") ||
		!strings.Contains(urls, "?transport=tcp") || servers.ICEServers[1].Credential == "" || servers.Policy != "all" {
		t.Fatalf("ice-servers answered %s, policy %q", urls, servers.Policy)
	}
	if left := time.Until(servers.ExpiresAt); left > consultations.TestCredentialTTL || left < consultations.TestCredentialTTL-time.Minute {
		t.Fatalf("the test's credential expires at %v, in %v; want in %v", servers.ExpiresAt, left, consultations.TestCredentialTTL)
	}
	exp, user, _ := strings.Cut(servers.ICEServers[1].Username, ":")
	if exp != fmt.Sprint(servers.ExpiresAt.Unix()) || !strings.HasPrefix(user, "t_") {
		t.Fatalf("TURN username %q: want the expiry and a test's own name", servers.ICEServers[1].Username)
	}
	a.expectError("GET", ice, "", nil, 401, "unauthenticated")
	a.expectError("GET", ice, "", tampered, 403, "bad_token")
	a.expectError("GET", "/api/v1/consultations/"+other.ID+"/ice-servers", "", patient, 403, "bad_token")

	precall := `{"kind":"precall","precall":{"stun":false,"public_address":"","udp":false,"tcp":true,"tls":null,"relay":"tcp",
		"rtt_ms":31.5,"throughput_kbps":2400,"verdict":"udp_blocked","words":"UDP is blocked on your network; the call will use the relay over TCP."}}`
	call := `{"kind":"call","call":{"duration_s":640,"peers":[{"role":"patient","name":"Ada","path":"relay","rtt_ms":48,"loss_pct":1.5,"jitter_ms":4,"outgoing_kbps":1800,"quality":"good"}]}}`
	var v consultations.QualityView
	if resp := a.do("POST", path, precall, patient, &v); resp.StatusCode != 201 || v.From.Role != consult.RolePatient || v.From.Name != "" || v.Precall.Verdict != "udp_blocked" {
		t.Fatalf("the patient's test: %d %s", resp.StatusCode, mustJSON(v))
	}
	if resp := a.do("POST", path, call, provider, &v); resp.StatusCode != 201 || v.From.Role != consult.RoleProvider || v.From.Name != "Dr Grace Hopper" {
		t.Fatalf("the provider's summary: %d %s", resp.StatusCode, mustJSON(v))
	}
	inv, err := e.svc.Consultations.Invite(context.Background(), consultations.ProviderCaller(e.provider, "test"), c.ID, consult.RoleGuest, "Marta (interpreter)")
	if err != nil {
		t.Fatal(err)
	}
	guest := bearer(linkToken(t, inv.JoinURL))
	if resp := a.do("POST", path, precall, guest, &v); resp.StatusCode != 201 || v.From.Role != consult.RoleGuest || v.From.Name != "Marta (interpreter)" {
		t.Fatalf("the interpreter's test: %d %s", resp.StatusCode, mustJSON(v))
	}

	// Bad input: each with its code, and nothing kept.
	for _, bad := range []struct {
		name, body string
		header     map[string]string
		status     int
		code       string
	}{
		{"an unknown kind", `{"kind":"speedtest"}`, patient, 400, "bad_field"},
		{"an unknown field", `{"kind":"precall","precall":{"stun":true,"public_ip":"203.0.113.9"}}`, patient, 400, "bad_json"},
		{"a reporter in the body", `{"kind":"call","from":{"role":"provider","name":"Dr Who"},"call":{"peers":[]}}`, patient, 400, "bad_json"},
		{"an address for a family", strings.Replace(precall, `"stun":false,"public_address":""`, `"stun":true,"public_address":"203.0.113.9"`, 1), patient, 400, "bad_field"},
		{"loss over 100%", strings.Replace(call, `"loss_pct":1.5`, `"loss_pct":150`, 1), patient, 400, "bad_field"},
		{"a body over 64 KiB", `{"kind":"call","call":{"peers":[{"role":"patient","name":"` + strings.Repeat("x", 64<<10) + `","quality":"good"}]}}`, patient, 413, "too_large"},
		{"a tampered token", precall, tampered, 403, "bad_token"},
		{"another consultation's link", precall, bearer(linkToken(t, other.JoinURL)), 403, "bad_token"},
		{"no credentials", precall, nil, 401, "unauthenticated"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			a := *a
			a.t = t
			a.expectError("POST", path, bad.body, bad.header, bad.status, bad.code)
		})
	}

	// A patient link does not read the reports; the provider does, signed in or with the link.
	a.expectError("GET", path, "", patient, 403, "bad_token")
	a.expectError("GET", path, "", nil, 401, "unauthenticated")
	session, err := e.svc.Accounts.NewSession(context.Background(), e.provider.ID)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		ConsultationID string                      `json:"consultation_id"`
		Reports        []consultations.QualityView `json:"reports"`
	}
	for _, who := range []map[string]string{provider, {"Cookie": "telemed_session=" + session}} {
		if resp := a.do("GET", path, "", who, &list); resp.StatusCode != 200 || list.ConsultationID != c.ID || len(list.Reports) != 3 ||
			list.Reports[0].From.Role != consult.RolePatient || list.Reports[1].Kind != consult.QualityCall || list.Reports[2].From.Role != consult.RoleGuest {
			t.Fatalf("GET /quality: %d %s; want the patient's test, the provider's summary, the interpreter's test", resp.StatusCode, mustJSON(list))
		}
	}

	// One person's reports are bounded: the patient has 1, and may make 11 more.
	for range consultations.MaxQualityReportsPerPerson - 1 {
		if resp := a.do("POST", path, precall, patient, nil); resp.StatusCode != 201 {
			t.Fatalf("a repeated test: %d", resp.StatusCode)
		}
	}
	a.expectError("POST", path, precall, patient, 400, "bad_field")
	if resp := a.do("POST", path, precall, guest, nil); resp.StatusCode != 201 {
		t.Fatalf("another person's test once the patient is at the limit: %d", resp.StatusCode)
	}

	// The provider ends the visit: the summaries of the call that just ended are still taken for an
	// hour, from links that no longer join; connection tests are not.
	if _, err := e.svc.Consultations.EndConsultation(context.Background(), e.provider, "test", c.ID); err != nil {
		t.Fatal(err)
	}
	a.expectError("GET", ice, "", guest, 403, "bad_token")
	if resp := a.do("POST", path, call, guest, nil); resp.StatusCode != 201 {
		t.Fatalf("a summary just after the end: %d", resp.StatusCode)
	}
	offset.Store(int64(consultations.QualityGrace + time.Minute))
	a.expectError("POST", path, call, guest, 403, "bad_token")

	trail, err := e.svc.Consultations.AuditTrail(context.Background(), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	reported := 0
	for _, line := range trail {
		if line.Action == consult.AuditQualityReported {
			reported++
			if strings.Contains(line.Detail, "2400") || strings.Contains(line.Detail, "Ada") {
				t.Errorf("audit line %+v holds figures or names", line)
			}
		}
	}
	if want := 3 + consultations.MaxQualityReportsPerPerson - 1 + 2; reported != want {
		t.Errorf("%d quality.reported audit lines, want %d", reported, want)
	}
}
