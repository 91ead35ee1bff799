package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/telemed/telemed/internal/auth"
)

// A cluster is telemed as a health system runs it: several `telemed serve` processes (the binary,
// built once) sharing one PostgreSQL database (the machine's, a database of the test's own) and one
// Redis (keys under a prefix of the test's own), behind HAProxy with the committed
// deploy/haproxy.cfg.
type cluster struct {
	t      *testing.T
	store  string // the database's URL
	redis  string
	prefix string
	lb     string // HAProxy's address
	nodes  []*clusterNode
	rdb    *redis.Client

	providerOnce sync.Once
}

type clusterNode struct {
	name string
	addr string
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// telemedBinary builds cmd/telemed once for the package's tests.
func telemedBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "telemed-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "telemed")
		out, err := exec.Command("go", "build", "-o", builtBin, "../cmd/telemed").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// testServices are the machine's PostgreSQL and Redis, from the variables scripts/test sets.
func testServices(t *testing.T) (postgresURL, redisURL string) {
	t.Helper()
	postgresURL, redisURL = os.Getenv("TELEMED_TEST_POSTGRES"), os.Getenv("TELEMED_TEST_REDIS")
	if postgresURL == "" || redisURL == "" {
		unavailable(t, "TELEMED_TEST_POSTGRES and TELEMED_TEST_REDIS are not both set",
			"scripts/test sets them", "set them to run the cluster tests, e.g. TELEMED_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test?sslmode=disable TELEMED_TEST_REDIS=redis://127.0.0.1:6379/0")
	}
	return postgresURL, redisURL
}

// newTestDatabase creates a database of the test's own on the server of base and returns its URL;
// it is dropped when the test ends.
func newTestDatabase(t *testing.T, base string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to PostgreSQL (%s): %v", base, err)
	}
	name := "telemed_e2e_" + strings.ToLower(strings.NewReplacer("-", "", "_", "").Replace(auth.NewID("")))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	conn.Close(ctx)
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, base)
		if err == nil {
			conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			conn.Close(ctx)
		}
	})
	cfg, err := pgx.ParseConfig(base)
	if err != nil {
		t.Fatal(err)
	}
	u := strings.Replace(base, "/"+cfg.Database, "/"+name, 1)
	return u
}

// freeAddr is a loopback address no one listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startCluster starts n nodes and HAProxy in front of them (at most 3: the committed configuration
// names three).
func startCluster(t *testing.T, n int) *cluster {
	t.Helper()
	pg, rd := testServices(t)
	if _, err := exec.LookPath("haproxy"); err != nil {
		unavailable(t, "haproxy is not installed", "scripts/test installs it", "apt-get install haproxy")
	}
	c := &cluster{t: t, store: newTestDatabase(t, pg), redis: rd, prefix: "telemede2e:" + auth.NewID("") + ":", lb: freeAddr(t)}
	opt, err := redis.ParseURL(rd)
	if err != nil {
		t.Fatal(err)
	}
	c.rdb = redis.NewClient(opt)
	t.Cleanup(func() {
		ctx := context.Background()
		if keys, _ := c.rdb.Keys(ctx, c.prefix+"*").Result(); len(keys) > 0 {
			c.rdb.Del(ctx, keys...)
		}
		c.rdb.Close()
	})
	bin := telemedBinary(t)
	if out, err := exec.Command(bin, "migrate", "--store", c.store).CombinedOutput(); err != nil {
		t.Fatalf("telemed migrate: %v\n%s", err, out)
	}
	for i := 0; i < 3; i++ {
		c.nodes = append(c.nodes, &clusterNode{name: fmt.Sprintf("node%d", i+1), addr: freeAddr(t)})
	}
	for _, nd := range c.nodes[:n] {
		c.start(nd)
	}
	c.startHAProxy()
	return c
}

// base is the public URL: HAProxy's.
func (c *cluster) base() string { return "http://" + c.lb }

func (c *cluster) start(nd *clusterNode) {
	t := c.t
	t.Helper()
	nd.log = &lockedBuffer{}
	nd.cmd = exec.Command(telemedBinary(t), "serve", "--http", nd.addr, "--base-url", c.base(),
		"--store", c.store, "--redis", c.redis, "--redis-prefix", c.prefix, "--turn=false", "--log-level", "debug",
		"--data", t.TempDir())
	nd.cmd.Stdout, nd.cmd.Stderr = nd.log, nd.log
	if err := nd.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", nd.name, err)
	}
	nd.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(nd.cmd, nd.done)
	t.Cleanup(func() {
		nd.cmd.Process.Kill()
		<-nd.done
		if t.Failed() {
			t.Logf("%s's log:\n%s", nd.name, nd.log.String())
		}
	})
	c.waitReady(nd)
}

// waitReady waits until the node's /readyz answers 200.
func (c *cluster) waitReady(nd *clusterNode) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + nd.addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-nd.done:
			c.t.Fatalf("%s exited: %s", nd.name, nd.log.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	c.t.Fatalf("%s never became ready: %s", nd.name, nd.log.String())
}

func (nd *clusterNode) running() bool {
	if nd.done == nil {
		return false
	}
	select {
	case <-nd.done:
		return false
	default:
		return true
	}
}

// kill stops a node at once (SIGKILL), as a crash would.
func (c *cluster) kill(nd *clusterNode) {
	nd.cmd.Process.Kill()
	<-nd.done
}

// stop stops a node as a rolling upgrade does (SIGTERM), and waits for it to exit; it reports how
// long that took.
func (c *cluster) stop(nd *clusterNode) time.Duration {
	c.t.Helper()
	start := time.Now()
	nd.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-nd.done:
	case <-time.After(30 * time.Second):
		c.t.Fatalf("%s did not exit within 30 s of SIGTERM", nd.name)
	}
	return time.Since(start)
}

func (c *cluster) startHAProxy() {
	t := c.t
	t.Helper()
	log := &lockedBuffer{}
	cmd := exec.Command("haproxy", "-f", "../deploy/haproxy.cfg", "-db")
	cmd.Env = append(os.Environ(), "TELEMED_LB_BIND="+c.lb, "TELEMED_NODE1="+c.nodes[0].addr,
		"TELEMED_NODE2="+c.nodes[1].addr, "TELEMED_NODE3="+c.nodes[2].addr)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start haproxy: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy's log:\n%s", log.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(c.base() + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("haproxy never passed a request to a ready node: %s", log.String())
}

// cli runs a telemed command on the cluster's database and returns its standard output.
func (c *cluster) cli(stdin string, args ...string) string {
	c.t.Helper()
	cmd := exec.Command(telemedBinary(c.t), append(args, "--store", c.store)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		c.t.Fatalf("telemed %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// consultation adds a provider (the first time) and a consultation, with links through HAProxy.
func (c *cluster) consultation() (startURL, joinURL, id string) {
	c.t.Helper()
	c.providerOnce.Do(func() {
		c.cli(testPassword+"\n", "provider", "add", "--email", "grace@clinic.example", "--name", "Dr Grace Hopper", "--password-stdin")
	})
	var v struct {
		ID       string `json:"id"`
		StartURL string `json:"start_url"`
		JoinURL  string `json:"join_url"`
	}
	out := c.cli("", "consult", "new", "--provider", "grace@clinic.example", "--title", "Cluster visit", "--base-url", c.base(), "--json")
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		c.t.Fatalf("consult new printed %q: %v", out, err)
	}
	return v.StartURL, v.JoinURL, v.ID
}

// nodeID is the name a node goes by in the shared rooms, from its log.
func (c *cluster) nodeID(nd *clusterNode) string {
	c.t.Helper()
	const mark = "node="
	for _, line := range strings.Split(nd.log.String(), "\n") {
		if strings.Contains(line, "sharing with the other nodes over Redis") {
			if i := strings.Index(line, mark); i >= 0 {
				id, _, _ := strings.Cut(line[i+len(mark):], " ")
				return id
			}
		}
	}
	c.t.Fatalf("%s did not log its node name", nd.name)
	return ""
}

// holder is the running node that holds a participant's connection.
func (c *cluster) holder(consultationID, participantID string) *clusterNode {
	c.t.Helper()
	id := c.nodeOf(consultationID, participantID)
	for _, nd := range c.nodes {
		if nd.running() && c.nodeID(nd) == id {
			return nd
		}
	}
	c.t.Fatalf("no running node is %q", id)
	return nil
}

// nodeOf is the node that holds a participant's connection, as the shared rooms say.
func (c *cluster) nodeOf(consultationID, participantID string) string {
	c.t.Helper()
	b, err := c.rdb.Get(context.Background(), c.prefix+"room:"+consultationID).Bytes()
	if err != nil {
		c.t.Fatalf("room %s in Redis: %v", consultationID, err)
	}
	var room struct {
		People map[string]struct {
			Conn string `json:"conn"`
		} `json:"people"`
	}
	if err := json.Unmarshal(b, &room); err != nil {
		c.t.Fatal(err)
	}
	node, _, _ := strings.Cut(room.People[participantID].Conn, " ")
	return node
}
