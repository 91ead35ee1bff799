package cluster

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/telemed/telemed/internal/cluster/clustertest"
	"github.com/telemed/telemed/internal/monitoring"
	"github.com/telemed/telemed/vitals"
)

// newBus makes r's event bus and receives its events into a channel, until the test ends.
func newBus(t *testing.T, r *Redis) (*EventBus, <-chan monitoring.MonitorEvent) {
	t.Helper()
	b, err := NewEventBus(context.Background(), r, EventsOptions{Block: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan monitoring.MonitorEvent, 1000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Receive(ctx, func(e monitoring.MonitorEvent) { got <- e })
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		b.Close()
	})
	return b, got
}

func next(t *testing.T, events <-chan monitoring.MonitorEvent, within time.Duration) monitoring.MonitorEvent {
	t.Helper()
	select {
	case e := <-events:
		return e
	case <-time.After(within):
		t.Fatalf("no event within %s", within)
		return monitoring.MonitorEvent{}
	}
}

func alert(id string) monitoring.MonitorEvent {
	return monitoring.MonitorEvent{Type: monitoring.EventAlert, PatientID: "p-1",
		Alert: &monitoring.AlertView{ID: id, PatientID: "p-1", Code: "8867-4", Value: 140, Unit: "/min", Bound: "high", Limit: 120}}
}

// TestEventsReachEveryOtherNode: an alert and a reading published on one node reach the other as
// they were; a node does not receive its own events back; Close sends what is queued.
func TestEventsReachEveryOtherNode(t *testing.T) {
	url := clustertest.URL(t)
	prefix := clustertest.Prefix(t, url)
	a := openNode(t, url, prefix, Options{})
	b := openNode(t, url, prefix, Options{})
	busA, fromA := newBus(t, a)
	busB, fromB := newBus(t, b)

	at := time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)
	obs := monitoring.MonitorEvent{Type: monitoring.EventObservation, PatientID: "p-1",
		Observation: &monitoring.ObservationView{ID: "o-1", Reading: vitals.Reading{Code: "8867-4", Time: at, Value: vitals.Float(140), Unit: "/min"}}}
	busA.Publish(alert("a-1"))
	busA.Publish(obs)
	if e := next(t, fromB, 5*time.Second); e.Type != monitoring.EventAlert || e.Alert.ID != "a-1" || e.Alert.Value != 140 || e.PatientID != "p-1" {
		t.Fatalf("first event on the other node: %+v", e)
	}
	e := next(t, fromB, 5*time.Second)
	if e.Type != monitoring.EventObservation || e.Observation.ID != "o-1" || !e.Observation.Time.Equal(at) || *e.Observation.Value != 140 {
		t.Fatalf("second event on the other node: %+v", e)
	}
	busB.Publish(alert("b-1"))
	if e := next(t, fromA, 5*time.Second); e.Alert == nil || e.Alert.ID != "b-1" {
		t.Fatalf("node A received %+v first, want B's alert and never its own", e)
	}
	// Published and closed at once: Close sends it.
	busA.Publish(alert("a-2"))
	busA.Close()
	if e := next(t, fromB, 5*time.Second); e.Alert.ID != "a-2" {
		t.Fatalf("after Close: %+v", e)
	}
	if sent, received := testutil.ToFloat64(busA.counted.WithLabelValues("sent")), testutil.ToFloat64(busB.counted.WithLabelValues("received")); sent != 3 || received != 3 {
		t.Fatalf("counted %v sent by A and %v received by B, want 3 and 3", sent, received)
	}
}

// cutOff is a node on the test Redis as a user of its own, whose connection the test can cut and
// keep cut (ACL SETUSER off and CLIENT KILL USER) without touching the other nodes.
type cutOff struct {
	t     *testing.T
	admin *redis.Client
	user  string
}

func newCutOff(t *testing.T, rawURL, prefix string) (*cutOff, string) {
	t.Helper()
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	admin := redis.NewClient(opts)
	c := &cutOff{t: t, admin: admin, user: "telemedtest-" + newNodeID()}
	ctx := context.Background()
	if err := admin.Do(ctx, "ACL", "SETUSER", c.user, "on", ">pw", "~"+prefix+"*", "resetchannels", "+@all").Err(); err != nil {
		t.Fatalf("create a Redis user for the test: %v", err)
	}
	t.Cleanup(func() {
		admin.Do(ctx, "ACL", "DELUSER", c.user)
		admin.Close()
	})
	u, _ := url.Parse(rawURL)
	u.User = url.UserPassword(c.user, "pw")
	return c, u.String()
}

// cut disconnects the user's connections and refuses new ones, until restore.
func (c *cutOff) cut() {
	c.t.Helper()
	ctx := context.Background()
	if err := c.admin.Do(ctx, "ACL", "SETUSER", c.user, "off").Err(); err != nil {
		c.t.Fatal(err)
	}
	n, err := c.admin.Do(ctx, "CLIENT", "KILL", "USER", c.user).Int()
	if err != nil || n == 0 {
		c.t.Fatalf("CLIENT KILL USER %s: %d connections, %v", c.user, n, err)
	}
}

func (c *cutOff) restore() {
	c.t.Helper()
	if err := c.admin.Do(context.Background(), "ACL", "SETUSER", c.user, "on").Err(); err != nil {
		c.t.Fatal(err)
	}
}

// TestEventsSurviveALostConnection: events published while a node's connection to Redis is cut,
// on the receiving side or on the sending side, all arrive in order once it is back.
func TestEventsSurviveALostConnection(t *testing.T) {
	rawURL := clustertest.URL(t)
	prefix := clustertest.Prefix(t, rawURL)
	t.Run("receiver cut off", func(t *testing.T) {
		c, cutURL := newCutOff(t, rawURL, prefix)
		sender := openNode(t, rawURL, prefix, Options{})
		receiver := openNode(t, cutURL, prefix, Options{})
		busS, _ := newBus(t, sender)
		_, got := newBus(t, receiver)
		busS.Publish(alert("before"))
		if e := next(t, got, 5*time.Second); e.Alert.ID != "before" {
			t.Fatalf("%+v", e)
		}
		c.cut()
		for i := range 50 {
			busS.Publish(alert(fmt.Sprint(i)))
		}
		select {
		case e := <-got:
			t.Fatalf("a node cut off from Redis received %+v", e)
		case <-time.After(500 * time.Millisecond):
		}
		c.restore()
		for i := range 50 {
			if e := next(t, got, 10*time.Second); e.Alert.ID != fmt.Sprint(i) {
				t.Fatalf("event %d after the connection came back: %+v", i, e)
			}
		}
	})
	t.Run("sender cut off", func(t *testing.T) {
		c, cutURL := newCutOff(t, rawURL, prefix)
		sender := openNode(t, cutURL, prefix, Options{})
		receiver := openNode(t, rawURL, prefix, Options{})
		busS, _ := newBus(t, sender)
		_, got := newBus(t, receiver)
		c.cut()
		for i := range 50 {
			busS.Publish(alert(fmt.Sprint(i)))
		}
		select {
		case e := <-got:
			t.Fatalf("an event of a node cut off from Redis arrived: %+v", e)
		case <-time.After(500 * time.Millisecond):
		}
		c.restore()
		for i := range 50 {
			if e := next(t, got, 10*time.Second); e.Alert.ID != fmt.Sprint(i) {
				t.Fatalf("event %d after the connection came back: %+v", i, e)
			}
		}
	})
}

// TestEventsDeliveredOnce: a batch added twice (as after a reply lost in a partial failure) is
// delivered once, and a node's own entries are skipped.
func TestEventsDeliveredOnce(t *testing.T) {
	url := clustertest.URL(t)
	prefix := clustertest.Prefix(t, url)
	a := openNode(t, url, prefix, Options{})
	b := openNode(t, url, prefix, Options{})
	busA, err := NewEventBus(context.Background(), a, EventsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer busA.Close()
	_, got := newBus(t, b)
	batch := busA.appendEntry(busA.appendEntry(nil, alert("1")), alert("2"))
	for range 2 {
		if err := busA.add(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
	busA.Publish(alert("3"))
	for _, want := range []string{"1", "2", "3"} {
		if e := next(t, got, 5*time.Second); e.Alert.ID != want {
			t.Fatalf("got alert %s, want %s", e.Alert.ID, want)
		}
	}
}
