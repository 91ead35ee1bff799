// Package sqlite is the embedded store: one SQLite file in the data folder, in WAL mode with foreign
// keys on, migrated on open from the SQL files embedded in the binary. The queries are sqlstore's,
// shared with PostgreSQL; this package opens the file and says how SQLite differs.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/telemed/telemed/internal/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Dialect is SQLite's: ? placeholders, constraint violations told by their message, no row locks
// (a write transaction begins IMMEDIATE and holds the database), rowid for insertion order.
func Dialect() sqlstore.Dialect {
	return sqlstore.Dialect{
		Name:         "sqlite",
		IsUnique:     isUnique,
		IsForeignKey: isForeignKey,
		InsertOrder:  "rowid",
		InsertRows:   64,
		Migrations:   migrations,
	}
}

// Pool bounds. SQLite has one writer at a time (a write transaction holds the database), so
// connections beyond a few only wait in busy_timeout, each holding a file and a thread; WAL lets a
// few readers run beside the writer. Kept open when idle: a new connection reruns the pragmas.
const (
	maxOpenConns = 8
	maxIdleConns = maxOpenConns
)

// isUnique reports a UNIQUE violation; SQLite reports primary key violations alike.
func isUnique(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

func isForeignKey(err error) bool {
	return err != nil && strings.Contains(err.Error(), "FOREIGN KEY constraint failed")
}

// Open opens (creating if needed) the database file at path and applies pending migrations.
func Open(ctx context.Context, path string) (*sqlstore.Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	// Built as a URL so that a '#', '?' or '%' in the folder's name stays part of the path.
	dsn := (&url.URL{Scheme: "file", OmitHost: true, Path: abs, RawQuery: q.Encode()}).String()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	db.SetMaxOpenConns(maxOpenConns)
	db.SetMaxIdleConns(maxIdleConns)
	s, err := sqlstore.Open(ctx, db, Dialect())
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	return s, nil
}
