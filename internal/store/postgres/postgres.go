// Package postgres is the store on PostgreSQL, for several telemed nodes sharing one database that
// the operator backs up, replicates and fails over. The queries are sqlstore's, shared with SQLite;
// this package connects (pgx, through database/sql), says how PostgreSQL differs, and holds the
// schema in PostgreSQL's dialect: the same tables and columns as SQLite's.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/telemed/telemed/internal/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLockKey names telemed's advisory lock: "telemed" in ASCII, as a number.
const migrationLockKey = 32762613530977636

// Pool bounds, per node: a few nodes stay well under PostgreSQL's default max_connections (100).
const (
	maxOpenConns = 20
	maxIdleConns = 5
	maxIdleTime  = 5 * time.Minute
	// connectTimeout bounds the first connection, so that a wrong host fails in words, not a hang.
	connectTimeout = 15 * time.Second
)

// IsURL reports whether s is a PostgreSQL connection URL (postgres:// or postgresql://).
func IsURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// Dialect is PostgreSQL's: numbered placeholders, SQLSTATE codes for violations, FOR UPDATE row
// locks, identity columns for insertion order, and an advisory lock around migrations.
func Dialect() sqlstore.Dialect {
	return sqlstore.Dialect{
		Name:         "postgres",
		Numbered:     true,
		IsUnique:     func(err error) bool { return sqlState(err) == "23505" },
		IsForeignKey: func(err error) bool { return sqlState(err) == "23503" },
		LockRow:      " FOR UPDATE",
		InsertOrder:  "seq",
		InsertRows:   250,
		// A transaction's advisory lock ends with it: no session to clean up after a crash.
		MigrationLock: fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", migrationLockKey),
		Migrations:    migrations,
	}
}

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// Open connects to the database that rawURL names (postgres://USER[:PASSWORD]@HOST[:PORT]/DB?...)
// and applies pending migrations. Its errors name the server and database, never the password.
func Open(ctx context.Context, rawURL string) (*sqlstore.Store, error) {
	if !IsURL(rawURL) {
		return nil, fmt.Errorf("%s: want postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (or postgresql://...)", Redact(rawURL))
	}
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		return nil, fmt.Errorf("--store: %w", err)
	}
	where := fmt.Sprintf("PostgreSQL at %s (database %q, user %q)", hostPort(cfg.Host, cfg.Port), cfg.Database, cfg.User)
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(maxOpenConns)
	db.SetMaxIdleConns(maxIdleConns)
	db.SetConnMaxIdleTime(maxIdleTime)
	pingCtx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s does not answer: %w; check that it runs and listens there (listen_addresses, port), "+
			"that pg_hba.conf lets this machine in, and the user, password and database of --store", where, err)
	}
	s, err := sqlstore.Open(ctx, db, Dialect())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return s, nil
}

func hostPort(host string, port uint16) string {
	if strings.HasPrefix(host, "/") {
		return host // a Unix socket's folder
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return fmt.Sprintf("%s:%d", host, port)
}

// Redact returns a store URL fit to print: its password replaced.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.User == nil {
		if err != nil {
			return "(a store URL that does not parse)"
		}
		return rawURL
	}
	return u.Redacted()
}
