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

func TestStoreCopyCommand(t *testing.T) {
	data := t.TempDir()
	if out, err := runCmd(t, pw, "provider", "add", "--data", data, "--email", "grace@clinic.example", "--name", "Dr Grace Hopper", "--password-stdin"); err != nil {
		t.Fatalf("provider add: %v\n%s", err, out)
	}
	url := pgtest.URL(t)
	out, err := runCmd(t, "", "store", "copy", "--from", data, "--to", url)
	if err != nil || !strings.Contains(out, "providers                   1            1") || !strings.Contains(out, "Every table has as many rows") {
		t.Fatalf("store copy: %v\n%s", err, out)
	}
	out, err = runCmd(t, "", "store", "copy", "--from", data, "--to", url)
	if err == nil || !strings.Contains(err.Error(), "not empty: providers (1 rows)") || !strings.Contains(err.Error(), "--replace") {
		t.Fatalf("copy into a store with records: %v\n%s", err, out)
	}
	if out, err := runCmd(t, "", "store", "copy", "--from", data, "--to", url, "--replace"); err != nil {
		t.Fatalf("store copy --replace: %v\n%s", err, out)
	}
	// The copy is a store like any: the provider is there.
	if out, err := runCmd(t, "", "token", "create", "--store", url, "--provider", "grace@clinic.example"); err != nil {
		t.Fatalf("token create on the copy: %v\n%s", err, out)
	}
	for _, bad := range [][]string{
		{"store", "copy", "--from", data},
		{"store", "copy", "--from", data, "--to", t.TempDir()},
		{"store", "copy", "--from", t.TempDir(), "--to", url},
		{"store", "copy", "--from", url, "--to", url, "--replace"},
	} {
		if _, err := runCmd(t, "", bad...); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}
