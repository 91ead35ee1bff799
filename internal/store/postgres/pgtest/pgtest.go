// Package pgtest gives tests a PostgreSQL database of their own: a new database with a random name
// on the server that TELEMED_TEST_POSTGRES names, dropped when the test ends.
//
// When the variable is unset the test is skipped with a message saying how to run it, except in CI
// (CI=true), where scripts/test sets it and a skipped store test would hide a store that was never
// tested: there it fails.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/telemed/telemed/internal/store/postgres"
	"github.com/telemed/telemed/internal/store/sqlstore"
)

// EnvVar names the variable that points the tests at a PostgreSQL server.
const EnvVar = "TELEMED_TEST_POSTGRES"

// ServerURL returns TELEMED_TEST_POSTGRES, or skips t (fails it under CI=true) when it is unset.
func ServerURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvVar)
	if u != "" {
		return u
	}
	const how = EnvVar + " is unset; to run the PostgreSQL tests, point it at a server where the user may create databases, " +
		"e.g. " + EnvVar + "=postgres://postgres@127.0.0.1:5432/test?sslmode=disable (scripts/test sets it)"
	if os.Getenv("CI") == "true" {
		t.Fatal(how)
	}
	t.Skip(how)
	return ""
}

// URL creates a database with a random name on the server of TELEMED_TEST_POSTGRES and returns its
// URL; the database is dropped when t ends, with whatever connections are left.
func URL(t testing.TB) string {
	t.Helper()
	server := ServerURL(t)
	u, err := url.Parse(server)
	if err != nil || !postgres.IsURL(server) {
		t.Fatalf("%s: want a postgres:// URL, got %s", EnvVar, postgres.Redact(server))
	}
	var b [6]byte
	rand.Read(b[:])
	name := "telemed_test_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, server)
	if err != nil {
		t.Fatalf("%s (%s): %v", EnvVar, postgres.Redact(server), err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := pgx.Connect(ctx, server)
		if err != nil {
			t.Errorf("drop test database %s: %v", name, err)
			return
		}
		defer admin.Close(ctx)
		// FORCE ends the connections a failed test may have left open.
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// Open opens a store on a new database of its own, closed and dropped when t ends.
func Open(t testing.TB) *sqlstore.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
