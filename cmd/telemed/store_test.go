package main

import (
	"strings"
	"testing"

	"github.com/telemed/telemed/internal/store/postgres/pgtest"
)

const pw = "correct horse battery staple\n"

// The one-off commands take --store as they take --data, and TELEMED_STORE as well.
func TestCommandsOnPostgres(t *testing.T) {
	url := pgtest.URL(t)
	out, err := runCmd(t, "", "migrate", "--store", url)
	if err != nil || !strings.Contains(out, "Applied 5 migrations") || !strings.Contains(out, "001_init, 002_transcripts") {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	if out, err := runCmd(t, "", "migrate", "--store", url); err != nil || !strings.Contains(out, "is current (005_quality): nothing to apply") {
		t.Fatalf("migrate again: %v\n%s", err, out)
	}
	if out, err := runCmd(t, pw, "provider", "add", "--store", url, "--email", "grace@clinic.example", "--name", "Dr Grace Hopper", "--password-stdin"); err != nil {
		t.Fatalf("provider add: %v\n%s", err, out)
	}
	t.Setenv("TELEMED_STORE", url)
	if out, err := runCmd(t, "", "token", "create", "--provider", "grace@clinic.example"); err != nil || !strings.HasPrefix(out, "tm_") {
		t.Fatalf("token create with TELEMED_STORE: %v\n%s", err, out)
	}
	t.Setenv("TELEMED_STORE", "")
	if _, err := runCmd(t, "", "migrate", "--store", "mysql://u:hunter2@h/db"); err == nil || !strings.Contains(err.Error(), "postgres://USER") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("another scheme: %v", err)
	}
}
