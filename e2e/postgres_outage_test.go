package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/telemed/telemed/client"
	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/config"
	"github.com/telemed/telemed/protocol"
)

// signIn posts the provider's credentials to the JSON API's sign-in endpoint of a node and returns
// the status, the error code of a refusal and the Retry-After header.
func signIn(t *testing.T, base string) (status int, code, retryAfter string) {
	t.Helper()
	body := fmt.Sprintf(`{"email":"grace@clinic.example","password":%q}`, testPassword)
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Post(base+"/api/v1/session", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("sign in at %s: %v", base, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		var e apiError
		if err := json.Unmarshal(data, &e); err != nil {
			t.Fatalf("sign in at %s: %d %q is not an error in JSON", base, resp.StatusCode, data)
		}
		code = e.Error.Code
	}
	return resp.StatusCode, code, resp.Header.Get("Retry-After")
}

// TestPostgresOutage: the PostgreSQL of two nodes (a cluster of the test's own, so that it may be
// stopped) stops for 20 s in the middle of a call across the nodes. The call's data goes on (peer
// to peer); both nodes say they are not ready, naming the store; a new join and a sign-in are told
// the server is unavailable, not that it failed. When PostgreSQL is back, with no restart of
// telemed, the nodes are ready again, a sign-in and a new join get in, and the call's signaling
// works across the nodes again.
func TestPostgresOutage(t *testing.T) {
	// The machine's PostgreSQL is not used (the test stops a cluster of its own), but the test
	// runs where the cluster tests do.
	_, redisURL := testServices(t)
	began := time.Now()
	step := func(what string) { t.Logf("%5.1f s: %s", time.Since(began).Seconds(), what) }
	pg := startPostgresCluster(t)
	step("PostgreSQL cluster of the test's own started")
	ns := startNodesWith(t, redisURL, 2, func(c *config.Serve) { c.StoreURL = pg.URL() }, serverOptions())
	ctx := ctxTimeout(t, 90*time.Second)
	provider, patient, check := callAcrossNodes(t, ctx, ns)
	other := ns.first.newConsultation(t, time.Hour)
	if status, code, _ := signIn(t, ns.all[1].BaseURL()); status != http.StatusOK {
		t.Fatalf("sign in before the outage: %d %s", status, code)
	}

	step("the call is up")
	pg.Stop()
	stopped := time.Now()
	step("PostgreSQL stopped")
	for i, srv := range ns.all {
		waitReady(t, ctx, srv, http.StatusServiceUnavailable, "the store does not answer", fmt.Sprintf("node %d", i))
	}
	newcomer := dialRaw(t, ctx, &env{srv: ns.all[1]})
	newcomer.send(t, joinMsg(other.JoinURL, "Bob", 1))
	if m := newcomer.readType(t, protocol.TypeError); m.Code != errcode.Unavailable {
		t.Fatalf("a join while PostgreSQL is out: %s; want %s", m.Raw, errcode.Unavailable)
	}
	for i, srv := range ns.all {
		if status, code, retry := signIn(t, srv.BaseURL()); status != http.StatusServiceUnavailable || code != string(errcode.Unavailable) || retry == "" {
			t.Fatalf("sign in on node %d while PostgreSQL is out: %d %q (Retry-After %q); want 503 %s with a Retry-After", i, status, code, retry, errcode.Unavailable)
		}
	}
	step("joins and sign-ins told the server is unavailable")
	time.Sleep(20*time.Second - time.Since(stopped))
	check.verify(t, "20 s without PostgreSQL")

	pg.Start()
	step("PostgreSQL started again")
	for i, srv := range ns.all {
		waitReady(t, ctx, srv, http.StatusOK, "", fmt.Sprintf("node %d", i))
	}
	step("both nodes ready")
	for i, srv := range ns.all {
		if status, code, _ := signIn(t, srv.BaseURL()); status != http.StatusOK {
			t.Fatalf("sign in on node %d after PostgreSQL came back: %d %s", i, status, code)
		}
	}
	late := mustJoin(t, ctx, client.Config{Link: ns.on(1, other.JoinURL), Name: "Bob"})
	if late.Welcome().State != protocol.StateWaiting {
		t.Fatalf("a join after PostgreSQL came back: %+v", late.Welcome())
	}
	if err := patient.SetMedia(ctx, false, true, false); err != nil {
		t.Fatal(err)
	}
	for {
		ev := waitEvent(t, ctx, provider, client.EventMedia)
		if !ev.Media.Audio {
			break
		}
	}
	noDeparture(t, "provider", provider)
	noDeparture(t, "patient", patient)
	check.verify(t, "after PostgreSQL came back")
}
