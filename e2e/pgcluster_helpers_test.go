package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/telemed/telemed/internal/auth"
)

// pgCluster is a PostgreSQL server of the test's own, made with Debian's postgresql-common tools
// (pg_createcluster, pg_ctlcluster): unlike the machine's shared PostgreSQL, the test may stop it
// and start it again. It listens on a free loopback port, trusts local connections (nothing but
// this machine reaches it) and is dropped, data and all, when the test ends.
type pgCluster struct {
	t       *testing.T
	version string
	name    string
	port    int
}

// startPostgresCluster creates and starts a cluster. Without the tools, or without the root
// privilege they need to create a cluster, the test skips (fails in CI, which runs as root with
// PostgreSQL installed).
func startPostgresCluster(t *testing.T) *pgCluster {
	t.Helper()
	for _, tool := range []string{"pg_createcluster", "pg_ctlcluster", "pg_dropcluster"} {
		if _, err := exec.LookPath(tool); err != nil {
			unavailable(t, tool+" is not installed", "scripts/test installs postgresql", "apt-get install postgresql to run the PostgreSQL fault tests")
		}
	}
	if os.Geteuid() != 0 {
		unavailable(t, "creating a PostgreSQL cluster needs root", "CI runs the tests as root", "run the PostgreSQL fault tests as root")
	}
	// The installed server versions, in Debian's layout; the newest is used.
	initdbs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(initdbs) == 0 {
		unavailable(t, "no PostgreSQL server is installed", "scripts/test installs postgresql", "apt-get install postgresql to run the PostgreSQL fault tests")
	}
	var versions []string
	for _, p := range initdbs {
		versions = append(versions, filepath.Base(filepath.Dir(filepath.Dir(p))))
	}
	sort.Slice(versions, func(i, j int) bool { return versionLess(versions[i], versions[j]) })
	_, port, _ := net.SplitHostPort(freeAddr(t))
	c := &pgCluster{t: t, version: versions[len(versions)-1],
		name: "telemed_e2e_" + strings.ToLower(strings.NewReplacer("-", "", "_", "").Replace(auth.NewID("")))}
	fmt.Sscan(port, &c.port)
	// --start-conf=manual: the machine's boot never starts this cluster. Trust on local and
	// loopback connections: the server listens on localhost only, for this test. --no-sync: a
	// cluster thrown away at the end need not wait for the disk (seconds on a busy machine).
	c.run("pg_createcluster", c.version, c.name, "--port", port, "--start-conf=manual",
		"--", "--auth-local=trust", "--auth-host=trust", "--no-sync")
	t.Cleanup(func() {
		if out, err := exec.Command("pg_dropcluster", "--stop", c.version, c.name).CombinedOutput(); err != nil {
			t.Errorf("pg_dropcluster %s %s: %v\n%s", c.version, c.name, err, out)
		}
	})
	c.Start()
	return c
}

// versionLess orders PostgreSQL major versions ("9.6" < "15").
func versionLess(a, b string) bool {
	var am, an, bm, bn int
	fmt.Sscanf(a, "%d.%d", &am, &an)
	fmt.Sscanf(b, "%d.%d", &bm, &bn)
	return am < bm || am == bm && an < bn
}

func (c *pgCluster) run(name string, args ...string) {
	c.t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		c.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// URL is the cluster's own postgres database, as the superuser.
func (c *pgCluster) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

// Start starts the cluster and waits until it accepts connections.
func (c *pgCluster) Start() {
	c.t.Helper()
	// The redirect to systemctl would need a unit for a cluster that is the test's alone.
	c.run("pg_ctlcluster", "--skip-systemctl-redirect", c.version, c.name, "start")
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, c.URL())
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("PostgreSQL cluster %s does not answer: %v", c.name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the cluster as an operator's `pg_ctlcluster stop` does (the fast mode: open
// connections are ended, transactions rolled back) and waits until it is down.
func (c *pgCluster) Stop() {
	c.t.Helper()
	c.run("pg_ctlcluster", "--skip-systemctl-redirect", c.version, c.name, "stop")
}
