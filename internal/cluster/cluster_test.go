package cluster

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/telemed/telemed/internal/cluster/clustertest"
)

// openNode opens one node on the test Redis under the test's prefix, closed when the test ends.
func openNode(t *testing.T, url, prefix string, o Options) *Redis {
	t.Helper()
	o.Prefix = prefix
	r, err := Open(context.Background(), url, o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestOpenRefusesBadURLs(t *testing.T) {
	cases := []struct{ url, want string }{
		{"http://127.0.0.1:6379", `scheme "http"`},
		{"127.0.0.1:6379", "cannot be parsed"},
		{"redis://", "no host"},
		{"redis://:s3cret@127.0.0.1:6379/notanumber", "database"},
		{"redis://:s3cret@[::1", "cannot be parsed"},
	}
	for _, c := range cases {
		t.Run(c.url, func(t *testing.T) {
			_, err := Open(context.Background(), c.url, Options{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Open(%q) = %v, want an error about %s", c.url, err, c.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("the error shows the password: %v", err)
			}
			if ValidateURL(c.url) == nil {
				t.Fatalf("ValidateURL(%q) accepted it", c.url)
			}
		})
	}
	if err := ValidateURL("rediss://user:pw@redis.example.org:6380/2"); err != nil {
		t.Fatalf("a rediss URL: %v", err)
	}
}

// TestOpenUnreachable: a Redis that is not there is told with its address and what to check.
func TestOpenUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = Open(ctx, "redis://:s3cret@"+addr+"/0", Options{})
	if err == nil || !strings.Contains(err.Error(), "redis at "+addr+" does not answer") || !strings.Contains(err.Error(), "check that Redis runs") {
		t.Fatalf("Open of a closed port: %v", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("the error shows the password: %v", err)
	}
}

func TestKeysAndNodes(t *testing.T) {
	url := clustertest.URL(t)
	prefix := clustertest.Prefix(t, url)
	a := openNode(t, url, prefix, Options{})
	b := openNode(t, url, prefix, Options{})
	if a.NodeID() == b.NodeID() || len(a.NodeID()) != 16 {
		t.Fatalf("node ids %q and %q: want two different random ids", a.NodeID(), b.NodeID())
	}
	if got := a.Key("node", "x"); got != prefix+"node:x" || a.Prefix() != prefix {
		t.Fatalf("Key = %q, Prefix = %q", got, a.Prefix())
	}
	if err := a.Client().Set(context.Background(), a.Key("k"), "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := b.Client().Get(context.Background(), b.Key("k")).Result(); err != nil || v != "v" {
		t.Fatalf("the other node reads %q, %v", v, err)
	}
	// The default prefix is telemed's.
	c, err := Open(context.Background(), url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		c.Close()
		clustertest.DeleteKeys(context.Background(), url, DefaultPrefix+"node:"+c.NodeID())
	}()
	if c.Prefix() != DefaultPrefix {
		t.Fatalf("default prefix %q", c.Prefix())
	}
}

// TestHeartbeats: a node closed is dead at once; a node that stops refreshing its heartbeat (as a
// crashed one does) is dead once the TTL has passed, and not before.
func TestHeartbeats(t *testing.T) {
	url := clustertest.URL(t)
	prefix := clustertest.Prefix(t, url)
	ctx := context.Background()
	watcher := openNode(t, url, prefix, Options{})
	closed := openNode(t, url, prefix, Options{})
	crashed := openNode(t, url, prefix, Options{HeartbeatTTL: 1500 * time.Millisecond})
	for _, n := range []*Redis{watcher, closed, crashed} {
		if alive, err := watcher.Alive(ctx, n.NodeID()); err != nil || !alive {
			t.Fatalf("node %s just opened: alive %v, %v", n.NodeID(), alive, err)
		}
	}
	// Refreshed: alive well past one TTL.
	time.Sleep(2 * time.Second)
	if alive, err := watcher.Alive(ctx, crashed.NodeID()); err != nil || !alive {
		t.Fatalf("a node beating after 2s of a 1.5s TTL: alive %v, %v", alive, err)
	}
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	if alive, err := watcher.Alive(ctx, closed.NodeID()); err != nil || alive {
		t.Fatalf("a closed node: alive %v, %v", alive, err)
	}
	crashed.stopHeartbeat()
	<-crashed.heartbeatDone
	start := time.Now()
	for {
		alive, err := watcher.Alive(ctx, crashed.NodeID())
		if err != nil {
			t.Fatal(err)
		}
		if !alive {
			break
		}
		if time.Since(start) > 3*time.Second {
			t.Fatal("a node that stopped beating is still alive 3s later, with a TTL of 1.5s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("a stopped heartbeat expired %s after its last refresh could have been", time.Since(start).Round(10*time.Millisecond))
	if alive, _ := watcher.Alive(ctx, "no-such-node"); alive {
		t.Fatal("an unknown node is alive")
	}
}

func TestCommandLatencyMetric(t *testing.T) {
	url := clustertest.URL(t)
	reg := prometheus.NewRegistry()
	r := openNode(t, url, clustertest.Prefix(t, url), Options{Metrics: reg})
	if err := r.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	n, err := testutil.GatherAndCount(reg, "telemed_redis_command_duration_seconds")
	if err != nil || n < 2 {
		t.Fatalf("%d series of telemed_redis_command_duration_seconds (%v), want ping's and set's", n, err)
	}
}
