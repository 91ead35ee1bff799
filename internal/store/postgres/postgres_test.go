package postgres_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/telemed/telemed/internal/store"
	"github.com/telemed/telemed/internal/store/postgres"
	"github.com/telemed/telemed/internal/store/postgres/pgtest"
	"github.com/telemed/telemed/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	pgtest.ServerURL(t) // skips (or fails) once, not in each subtest
	storetest.Run(t, func(t *testing.T) store.Store { return pgtest.Open(t) })
}

func TestAuditIsAppendOnly(t *testing.T) {
	storetest.AuditAppendOnly(t, pgtest.Open(t), "TRUNCATE audit")
}

func TestConcurrentOpen(t *testing.T) {
	url := pgtest.URL(t)
	storetest.ConcurrentOpen(t, 8, func(ctx context.Context) (storetest.SQLStore, error) { return postgres.Open(ctx, url) })
}

// openURLVar tells this test binary, run again as a child, to open the store at that URL and exit.
const openURLVar = "TELEMED_TEST_OPEN_STORE"

// TestMain lets the binary stand in for a telemed node that starts and migrates: separate
// processes, as several nodes are, not only separate connections of one.
func TestMain(m *testing.M) {
	if u := os.Getenv(openURLVar); u != "" {
		s, err := postgres.Open(context.Background(), u)
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		s.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestProcessesMigrateAtOnce(t *testing.T) {
	url := pgtest.URL(t)
	const n = 4
	cmds := make([]*exec.Cmd, n)
	outs := make([]*strings.Builder, n)
	for i := range n {
		outs[i] = &strings.Builder{}
		cmds[i] = exec.Command(os.Args[0], "-test.run=^$")
		cmds[i].Env = append(os.Environ(), openURLVar+"="+url)
		cmds[i].Stderr = outs[i]
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Errorf("process %d: %v: %s", i, err, outs[i])
		}
	}
	s, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if len(s.Applied()) != 0 {
		t.Fatalf("the processes left migrations %v to apply", s.Applied())
	}
	var versions int
	if err := s.DB().QueryRow(`SELECT count(*) FROM schema_migrations`).Scan(&versions); err != nil || versions < 5 {
		t.Fatalf("schema_migrations: %d, %v", versions, err)
	}
}

func TestUnreachableSaysWhere(t *testing.T) {
	_, err := postgres.Open(context.Background(), "postgres://telemed:secret@127.0.0.1:1/clinic?sslmode=disable&connect_timeout=2")
	if err == nil {
		t.Fatal("opened a database on port 1")
	}
	for _, want := range []string{"127.0.0.1:1", `"clinic"`, "pg_hba.conf"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("error %q shows the password", err)
	}
	if _, err := postgres.Open(context.Background(), "mysql://x@y/z"); err == nil || !strings.Contains(err.Error(), "postgres://") {
		t.Errorf("another scheme: %v, want the accepted form named", err)
	}
}
