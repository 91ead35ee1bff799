package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/telemed/telemed/client"
	"github.com/telemed/telemed/internal/config"
	"github.com/telemed/telemed/internal/server"
	"github.com/telemed/telemed/internal/turn"
	"github.com/telemed/telemed/protocol"
)

// relayedCall joins a provider and a patient (Go clients) and waits until media and data flow. The
// server's configuration decides whether that is through the relay.
func relayedCall(t *testing.T, ctx context.Context, e *env) (prov, pat *side, provider, patient *client.Session) {
	t.Helper()
	c := e.newConsultation(t, time.Hour)
	prov, pat = newSide(t, "provider"), newSide(t, "patient")
	var err error
	provider, err = client.Join(ctx, prov.config(c.StartURL))
	if err != nil {
		t.Fatalf("provider join: %v", err)
	}
	t.Cleanup(func() { provider.Close() })
	qcfg := pat.config(c.JoinURL)
	qcfg.DataChannels = []client.DataChannelSpec{{Label: "chat"}}
	patient, err = client.Join(ctx, qcfg)
	if err != nil {
		t.Fatalf("patient join: %v", err)
	}
	t.Cleanup(func() { patient.Close() })
	if _, err := provider.WaitWaiting(ctx); err != nil {
		t.Fatal(err)
	}
	if err := provider.Admit(ctx, patient.ID()); err != nil {
		t.Fatal(err)
	}
	go prov.sendSamples(ctx)
	go pat.sendSamples(ctx)
	for _, s := range []*side{prov, pat} {
		select {
		case <-s.gotMsg:
		case <-ctx.Done():
			t.Fatalf("%s got no data channel message", s.name)
		}
	}
	waitPackets(t, prov, pat, 20, 10*time.Second)
	return prov, pat, provider, patient
}

// waitPackets waits until both sides have received at least n packets each.
func waitPackets(t *testing.T, a, b *side, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		na, _ := a.received()
		nb, _ := b.received()
		if na >= n && nb >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("media stalled: %s has %d packets, %s has %d; want %d each", a.name, na, b.name, nb, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// selectedPair is the candidate types of a session's selected ICE pair, local then remote.
func selectedPair(t *testing.T, ctx context.Context, s *client.Session) (local, remote string) {
	t.Helper()
	p, err := s.WaitPeer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := p.PC.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("no selected candidate pair: %v", err)
	}
	return pair.Local.Typ.String(), pair.Remote.Typ.String()
}

// TestRelayedCallOutlivesItsCredential: a consultation goes on long after the TURN credentials its
// participants got at join have expired. The relay checks a credential's expiry when an allocation is
// made, not when it is refreshed; allocations here last 3 s, so they are refreshed every 1.5 s with the
// expired credential, and the call would stop within 3 s if a refresh were refused.
func TestRelayedCallOutlivesItsCredential(t *testing.T) {
	var ahead atomic.Int64 // how far the test has moved the server's clock
	o := serverOptions()
	o.Now = func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	o.TURNAllocationLifetime = 3 * time.Second
	e := startServerEnv(t, func(c *config.Serve) {
		c.ICETransportPolicy = "relay"
		c.TURNAllowLoopback = true
		c.TURNCredentialTTL = time.Minute
	}, o)
	ctx := ctxTimeout(t, 60*time.Second)
	prov, pat, provider, patient := relayedCall(t, ctx, e)
	for _, s := range []*client.Session{provider, patient} {
		if l, r := selectedPair(t, ctx, s); l != "relay" || r != "relay" {
			t.Fatalf("selected pair %s -> %s, want relay -> relay", l, r)
		}
	}
	allocations := e.srv.TURN().Allocations()

	ahead.Store(int64(2 * time.Minute)) // every credential handed out is now a minute past its expiry
	time.Sleep(7 * time.Second)         // over two allocation lifetimes
	np, _ := prov.received()
	nq, _ := pat.received()
	waitPackets(t, prov, pat, np+50, 3*time.Second) // 20 ms packets: 50 is one second of audio
	waitPackets(t, prov, pat, nq+50, 3*time.Second)
	if n := e.srv.TURN().Allocations(); n != allocations {
		t.Fatalf("allocations %d, were %d: the relays should have been refreshed, not replaced", n, allocations)
	}
	if n := expiredRefusals(t, e.srv); n != 0 {
		t.Fatalf("%v requests refused for an expired credential; refreshes must not be", n)
	}
}

func expiredRefusals(t *testing.T, srv *server.Server) float64 {
	t.Helper()
	metrics, err := srv.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range metrics {
		if mf.GetName() != "telemed_turn_refusals_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == "expired_credential" {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatal("no telemed_turn_refusals_total{reason=expired_credential}")
	return 0
}

// TestTurnutilsUclient runs coturn's load client, a TURN client telemed did not write, against the
// embedded server with TURN REST credentials: data is relayed between its two allocations. A wrong
// password and an expired username are refused.
func TestTurnutilsUclient(t *testing.T) {
	uclient := findTool(t, "turnutils_uclient", "coturn")
	const secret = "uclient-test-secret-0123"
	e := startServerEnv(t, func(c *config.Serve) {
		c.TURNSecret = secret
		c.TURNAllowLoopback = true // -y relays between two allocations on 127.0.0.1
	}, serverOptions())
	port := strconv.Itoa(turn.Port(e.srv.TURN().UDPAddr()))
	run := func(user, password string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, _ := exec.CommandContext(ctx, uclient, "-y", "-c", "-u", user, "-w", password, "-p", port,
			"-m", "2", "-l", "120", "-n", "50", "127.0.0.1").CombinedOutput()
		return string(out)
	}

	good := turn.NewCredential([]byte(secret), "uclient", time.Now().Add(time.Hour))
	out := run(good.Username, good.Password)
	m := regexp.MustCompile(`tot_send_msgs=(\d+), tot_recv_msgs=(\d+)`).FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		t.Fatalf("uclient printed no totals:\n%s", out)
	}
	last := m[len(m)-1]
	sent, _ := strconv.Atoi(last[1])
	recv, _ := strconv.Atoi(last[2])
	// Two clients x 50 messages each way through the relay; loopback loses none.
	if sent != 100 || recv != 100 {
		t.Fatalf("uclient sent %d and received %d messages through the relay, want 100 and 100:\n%s", sent, recv, out)
	}

	expired := turn.NewCredential([]byte(secret), "uclient", time.Now().Add(-time.Minute))
	for name, c := range map[string]turn.Credential{
		"wrong password":   {Username: good.Username, Password: "d3Jvbmc="},
		"expired username": expired,
	} {
		out := run(c.Username, c.Password)
		if !strings.Contains(out, "Cannot complete Allocation") || strings.Contains(out, "tot_recv_msgs") {
			t.Errorf("%s: uclient should fail to allocate:\n%s", name, out)
		}
	}
}

// findTool returns the path of a program that Debian's package pkg installs. It skips the test when
// the program is missing, except in CI, where scripts/test installs it and its absence is a failure.
func findTool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		unavailable(t, name+" not found", "scripts/test installs Debian's "+pkg+" package",
			"install Debian's "+pkg+" package (scripts/test does)")
	}
	return path
}

// TestWelcomeCarriesTURNCredentials: each participant's welcome lists the embedded STUN/TURN over UDP
// and TCP with a credential that names them, valid for the configured lifetime, that the relay
// accepts; a resumed session gets a new one. External servers are listed with the same credential.
func TestWelcomeCarriesTURNCredentials(t *testing.T) {
	const secret = "welcome-test-secret-0123"
	e := startServerEnv(t, func(c *config.Serve) {
		c.TURNSecret = secret
		c.TURNCredentialTTL = 2 * time.Hour
		c.TURNServers = []string{"turns:turn1.example.org:443?transport=tcp", "stun:stun1.example.org"}
	}, serverOptions())
	c := e.newConsultation(t, time.Hour)
	ctx := ctxTimeout(t, 10*time.Second)
	r := dialRaw(t, ctx, e)
	w := welcomeOf(t, r.join(t, c.JoinURL, "Ada"))
	port := strconv.Itoa(turn.Port(e.srv.TURN().UDPAddr()))
	if w.ICEPolicy != "all" || len(w.ICEServers) != 2 {
		t.Fatalf("welcome ICE: policy %q, servers %+v", w.ICEPolicy, w.ICEServers)
	}
	stunEntry, turnEntry := w.ICEServers[0], w.ICEServers[1]
	wantSTUN := []string{"stun:127.0.0.1:" + port, "stun:stun1.example.org"}
	wantTURN := []string{"turn:127.0.0.1:" + port + "?transport=udp", "turn:127.0.0.1:" + port + "?transport=tcp",
		"turns:turn1.example.org:443?transport=tcp"}
	if strings.Join(stunEntry.URLs, " ") != strings.Join(wantSTUN, " ") || stunEntry.Username != "" {
		t.Errorf("STUN entry %+v, want %v without credential", stunEntry, wantSTUN)
	}
	if strings.Join(turnEntry.URLs, " ") != strings.Join(wantTURN, " ") {
		t.Errorf("TURN URLs %v, want %v", turnEntry.URLs, wantTURN)
	}
	expires, user, err := turn.ParseUsername(turnEntry.Username)
	if err != nil || user != w.You.ID {
		t.Fatalf("TURN username %q: user %q (%v), want the participant %s", turnEntry.Username, user, err, w.You.ID)
	}
	if d := time.Until(expires); d < 119*time.Minute || d > 121*time.Minute {
		t.Errorf("credential expires in %s, want the configured 2h", d)
	}
	if want := turn.NewCredential([]byte(secret), user, expires); turnEntry.Credential != want.Password {
		t.Errorf("credential %q is not HMAC-SHA1(secret, username)", turnEntry.Credential)
	}

	// Resuming after a lost connection brings a fresh credential (one second later at least, since
	// the expiry is in whole seconds).
	time.Sleep(1100 * time.Millisecond)
	r.ws.CloseNow()
	r2 := dialRaw(t, ctx, e)
	_, id, token, _ := client.ParseLink(c.JoinURL)
	r2.send(t, fmt.Sprintf(`{"type":"join","version":1,"consultation":%q,"token":%q,"name":"Ada","resume":%q}`, id, token, w.Resume))
	m, err := r2.read(t)
	if err != nil || m.Type != "welcome" {
		t.Fatalf("resume: %+v %v", m, err)
	}
	w2 := welcomeOf(t, m)
	if w2.You.ID != w.You.ID || len(w2.ICEServers) != 2 || w2.ICEServers[1].Username == turnEntry.Username {
		t.Fatalf("resumed welcome %+v: want the same participant with a new TURN credential", w2.ICEServers)
	}
}

// TestWelcomeWithoutTURN: --turn=false with no external server hands out no ICE servers at all.
func TestWelcomeWithoutTURN(t *testing.T) {
	e := startServerEnv(t, func(c *config.Serve) { c.TURN = false }, serverOptions())
	if e.srv.TURN() != nil {
		t.Fatal("embedded TURN running with --turn=false")
	}
	c := e.newConsultation(t, time.Hour)
	ctx := ctxTimeout(t, 10*time.Second)
	w := welcomeOf(t, dialRaw(t, ctx, e).join(t, c.JoinURL, "Ada"))
	if len(w.ICEServers) != 0 {
		t.Fatalf("ICE servers %+v, want none", w.ICEServers)
	}
}

// TestMetricsEndpoint: GET /metrics shows the relay's metrics to a provider's API token, and to no one
// without one.
func TestMetricsEndpoint(t *testing.T) {
	e := startServer(t, serverOptions())
	token, err := e.svc.Accounts.CreateAPIToken(context.Background(), e.provider.ID, "prometheus")
	if err != nil {
		t.Fatal(err)
	}
	get := func(authz string) (int, string) {
		req, _ := http.NewRequest("GET", e.srv.BaseURL()+"/metrics", nil)
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, _ := get(""); code != 401 {
		t.Fatalf("GET /metrics without a token: %d, want 401", code)
	}
	code, body := get("Bearer " + token)
	if code != 200 {
		t.Fatalf("GET /metrics: %d", code)
	}
	for _, want := range []string{"telemed_turn_allocations 0", `telemed_turn_refusals_total{reason="forbidden_peer"} 0`,
		`telemed_turn_relayed_bytes_total{direction="to_peer"}`, "go_goroutines"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func welcomeOf(t *testing.T, m rawMessage) protocol.Welcome {
	t.Helper()
	var w protocol.Welcome
	if err := json.Unmarshal(m.Raw, &w); err != nil {
		t.Fatal(err)
	}
	return w
}

// TestCallThroughExternalCoturn: with the embedded relay off, telemed hands out credentials for an
// external coturn that shares its secret (a coturn fleet), and a relay-only call connects through it.
func TestCallThroughExternalCoturn(t *testing.T) {
	turnserver := findTool(t, "turnserver", "coturn")
	const secret = "coturn-fleet-secret-0123"
	port := freeUDPPort(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, turnserver, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
		"--listening-port="+strconv.Itoa(port), "--min-port=45000", "--max-port=45999",
		"--use-auth-secret", "--static-auth-secret="+secret, "--realm=telemed",
		"--allow-loopback-peers", // both Go clients and the relay are on 127.0.0.1
		"--no-tls", "--no-dtls", "--no-cli", "--db="+filepath.Join(dir, "turndb"),
		"--log-file="+filepath.Join(dir, "turn.log"), "--simple-log", "--no-stdout-log",
		"--pidfile="+filepath.Join(dir, "turn.pid"))
	if err := cmd.Start(); err != nil {
		t.Fatalf("start turnserver: %v", err)
	}
	defer cmd.Wait()
	defer cancel()

	e := startServerEnv(t, func(c *config.Serve) {
		c.TURN = false
		c.TURNSecret = secret
		c.TURNServers = []string{fmt.Sprintf("turn:127.0.0.1:%d?transport=udp", port)}
		c.ICETransportPolicy = "relay"
	}, serverOptions())
	callCtx := ctxTimeout(t, 30*time.Second)
	_, _, provider, patient := relayedCall(t, callCtx, e)
	for _, s := range []*client.Session{provider, patient} {
		if l, r := selectedPair(t, callCtx, s); l != "relay" || r != "relay" {
			t.Fatalf("selected pair %s -> %s, want relay -> relay through coturn", l, r)
		}
	}
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}
