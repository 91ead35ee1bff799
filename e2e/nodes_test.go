package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/telemed/telemed/client"
	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/cluster/clustertest"
	"github.com/telemed/telemed/internal/config"
	"github.com/telemed/telemed/internal/monitoring"
	"github.com/telemed/telemed/internal/server"
	"github.com/telemed/telemed/internal/signal"
	"github.com/telemed/telemed/internal/signal/hub"
	"github.com/telemed/telemed/protocol"
)

// nodes are servers in this process that share a data folder (standing in for a shared database)
// and a Redis under a prefix of the test's own: the first has the provider account.
type nodes struct {
	first *env
	all   []*server.Server
}

func startNodes(t *testing.T, redisURL string, n int) *nodes {
	t.Helper()
	return startNodesWith(t, redisURL, n, nil, serverOptions())
}

// startNodesWith is startNodes with a configuration that more may change on every node (such as
// the store's URL, for nodes on PostgreSQL rather than the shared folder's SQLite).
func startNodesWith(t *testing.T, redisURL string, n int, more func(*config.Serve), o server.Options) *nodes {
	t.Helper()
	dir, prefix := t.TempDir(), clustertest.Prefix(t, redisURL)
	configure := func(c *config.Serve) {
		c.DataDir, c.Redis, c.RedisPrefix, c.TURN = dir, redisURL, prefix, false
		if more != nil {
			more(c)
		}
	}
	ns := &nodes{first: startServerEnv(t, configure, o)}
	ns.all = append(ns.all, ns.first.srv)
	for i := 1; i < n; i++ {
		ns.all = append(ns.all, startServerConfig(t, configure, o))
	}
	return ns
}

// on rewrites a link to go to node i.
func (ns *nodes) on(i int, link string) string {
	return strings.Replace(link, ns.first.srv.BaseURL(), ns.all[i].BaseURL(), 1)
}

// callAcrossNodes puts a provider on node 0 and a patient on node 1 in a call, with the check channel
// between them.
func callAcrossNodes(t *testing.T, ctx context.Context, ns *nodes) (provider, patient *client.Session, check *echoCheck) {
	t.Helper()
	c := ns.first.newConsultation(t, time.Hour)
	check = newEchoCheck()
	provider = mustJoin(t, ctx, echoer(client.Config{Link: c.StartURL, Logger: testLogger(t).With("client", "provider")}))
	patient = mustJoin(t, ctx, check.config(client.Config{Link: ns.on(1, c.JoinURL), Name: "Ada", Logger: testLogger(t).With("client", "patient")}))
	if _, err := provider.WaitWaiting(ctx); err != nil {
		t.Fatalf("the provider on one node never saw the patient waiting on another: %v", err)
	}
	if err := provider.Admit(ctx, patient.ID()); err != nil {
		t.Fatal(err)
	}
	check.run(t, ctx)
	return provider, patient, check
}

// TestCallAcrossTwoNodes: the provider's signaling connection is on one node, the patient's on
// another; the waiting room, admission, offers, answers, candidates and media state all pass between
// them through Redis, and the call connects.
func TestCallAcrossTwoNodes(t *testing.T) {
	ns := startNodes(t, clustertest.URL(t), 2)
	ctx := ctxTimeout(t, 30*time.Second)
	provider, patient, check := callAcrossNodes(t, ctx, ns)
	if err := patient.SetMedia(ctx, true, false, false); err != nil {
		t.Fatal(err)
	}
	if ev := waitEvent(t, ctx, provider, client.EventMedia); ev.Media.Video {
		t.Fatalf("media %+v: the patient's camera is off", ev.Media)
	}
	time.Sleep(300 * time.Millisecond)
	check.verify(t, "a call across two nodes")
	if got := metricValue(t, ns.all[1].Metrics(), `telemed_cluster_messages_received_total{from="other_node"}`); got < 3 {
		t.Errorf("node 1 delivered %v messages from the other node; the offer, answer and candidates come from there", got)
	}
}

// TestAlertsReachEveryNode: a device uploads to node 2; the provider's patient page, following the
// patient's events on node 0, gets the alert live, and a provider in a call on node 1 gets the
// alert message in the call.
func TestAlertsReachEveryNode(t *testing.T) {
	ns := startNodes(t, clustertest.URL(t), 3)
	ctx := ctxTimeout(t, 30*time.Second)
	m := &monitoringEnv{env: ns.first, api: newAPIClient(t, ns.first)}
	token, err := ns.first.svc.Accounts.CreateAPIToken(ctx, ns.first.provider.ID, "test")
	if err != nil {
		t.Fatal(err)
	}
	m.provider = map[string]string{"Authorization": "Bearer " + token}
	var patient monitoring.PatientView
	if resp := m.api.do("POST", "/api/v1/patients", `{"name":"Ada Lovelace","birth_date":"1950-12-10"}`, m.provider, &patient); resp.StatusCode != 201 {
		t.Fatalf("create patient: %d", resp.StatusCode)
	}
	var enr monitoring.EnrollmentView
	m.api.do("POST", "/api/v1/patients/"+patient.ID+"/enrollments", "", m.provider, &enr)
	var dev monitoring.EnrolledDevice
	onC := &apiClient{t: t, base: ns.all[2].BaseURL(), http: &http.Client{Timeout: 10 * time.Second}}
	if resp := onC.do("POST", "/api/v1/devices/enroll", fmt.Sprintf(`{"code":%q,"name":"Oximeter"}`, enr.Code), nil, &dev); resp.StatusCode != 201 {
		t.Fatalf("enroll on node 2: %d", resp.StatusCode)
	}
	var consultation struct {
		ID       string `json:"id"`
		StartURL string `json:"start_url"`
	}
	body := fmt.Sprintf(`{"title":"Check-in","patient_id":%q}`, patient.ID)
	if resp := m.api.do("POST", "/api/v1/consultations", body, m.provider, &consultation); resp.StatusCode != 201 {
		t.Fatalf("create consultation: %d", resp.StatusCode)
	}

	// The page on node 0 follows the patient's events.
	req, _ := http.NewRequestWithContext(ctx, "GET", ns.all[0].BaseURL()+"/api/v1/patients/"+patient.ID+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("events on node 0: %v %v", resp, err)
	}
	defer resp.Body.Close()
	events := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "event: ") {
				events <- strings.TrimPrefix(line, "event: ")
			}
		}
	}()
	// The provider is in the consultation's call on node 1.
	var provider *raw
	{
		e1 := &env{srv: ns.all[1]}
		provider = dialRaw(t, ctx, e1)
		link := strings.Replace(consultation.StartURL, ns.first.srv.BaseURL(), ns.all[1].BaseURL(), 1)
		provider.send(t, joinMsg(link, "", 1))
		provider.readType(t, protocol.TypeWelcome)
	}
	time.Sleep(200 * time.Millisecond) // the page's stream is open before the upload

	reading := `{"batch_id":"b1","readings":[{"code":"2708-6","value":82,"unit":"%","time":"` + time.Now().UTC().Format(time.RFC3339) + `"}]}`
	if resp := onC.do("POST", "/api/v1/observations", reading, map[string]string{"Authorization": "Bearer " + dev.Token}, nil); resp.StatusCode/100 != 2 {
		t.Fatalf("upload on node 2: %d", resp.StatusCode)
	}
	for got := false; !got; {
		select {
		case ev := <-events:
			got = ev == monitoring.EventAlert
		case <-ctx.Done():
			t.Fatal("the page on node 0 never got the alert raised on node 2")
		}
	}
	alert := provider.readType(t, protocol.TypeAlert)
	var a struct {
		Alert struct {
			Code string `json:"code"`
		} `json:"alert"`
	}
	if err := json.Unmarshal(alert.Raw, &a); err != nil || a.Alert.Code != "2708-6" {
		t.Fatalf("alert in the call on node 1: %s (%v)", alert.Raw, err)
	}
}

// TestRedisOutage: Redis stops for 20 s in the middle of a call across two nodes. The call's data
// goes on (peer to peer); both nodes say they are not ready, with the reason; a new join is told
// the server is unavailable. When Redis is back, with no restart of telemed, the nodes are ready
// again, a new join gets in, and the call's signaling works across the nodes again.
func TestRedisOutage(t *testing.T) {
	rs := clustertest.StartKeepingServer(t)
	// A grace period far shorter than the outage: when Redis is back, each node's heartbeat has
	// lapsed, and another node may mark its places lost; the node holding them must claim them back
	// before they expire.
	ns := startNodesWith(t, rs.URL(), 2, nil, server.Options{Signal: signal.Options{Options: hub.Options{ResumeGrace: 3 * time.Second}}})
	ctx := ctxTimeout(t, 90*time.Second)
	provider, patient, check := callAcrossNodes(t, ctx, ns)
	other := ns.first.newConsultation(t, time.Hour)

	rs.Stop()
	for i, srv := range ns.all {
		waitReady(t, ctx, srv, http.StatusServiceUnavailable, "redis does not answer", fmt.Sprintf("node %d", i))
	}
	newcomer := dialRaw(t, ctx, &env{srv: ns.all[1]})
	newcomer.send(t, joinMsg(other.JoinURL, "Bob", 1))
	if m := newcomer.readType(t, protocol.TypeError); m.Code != errcode.Unavailable {
		t.Fatalf("a join while Redis is out: %s; want %s", m.Raw, errcode.Unavailable)
	}
	time.Sleep(20 * time.Second)
	check.verify(t, "20 s without Redis")

	rs.Start()
	for i, srv := range ns.all {
		waitReady(t, ctx, srv, http.StatusOK, "", fmt.Sprintf("node %d", i))
	}
	late := mustJoin(t, ctx, client.Config{Link: ns.on(1, other.JoinURL), Name: "Bob"})
	if late.Welcome().State != protocol.StateWaiting {
		t.Fatalf("a join after Redis came back: %+v", late.Welcome())
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
	time.Sleep(5 * time.Second) // past the grace period
	if err := provider.SetMedia(ctx, true, false, false); err != nil {
		t.Fatal(err)
	}
	for {
		if ev := waitEvent(t, ctx, patient, client.EventMedia); !ev.Media.Video {
			break
		}
	}
	noDeparture(t, "provider", provider)
	noDeparture(t, "patient", patient)
	check.verify(t, "after Redis came back")
}

// waitReady waits until GET /readyz answers status (and, for a 503, names reason).
func waitReady(t *testing.T, ctx context.Context, srv *server.Server, status int, reason, who string) {
	t.Helper()
	var last string
	for ctx.Err() == nil {
		resp, err := http.Get(srv.BaseURL() + "/readyz")
		if err == nil {
			var body struct{ Status, Reason string }
			json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			last = fmt.Sprintf("%d %+v", resp.StatusCode, body)
			if resp.StatusCode == status && body.Reason == reason {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: /readyz never answered %d %q (last %s)", who, status, reason, last)
}
