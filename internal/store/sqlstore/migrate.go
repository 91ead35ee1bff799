package sqlstore

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"
)

// migrate applies the dialect's pending migrations, each in a transaction of its own that also
// records it in schema_migrations, and returns the versions it applied.
func (s *Store) migrate(ctx context.Context) ([]string, error) {
	names, err := fs.Glob(s.dialect.Migrations, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: no migrations embedded", s.dialect.Name)
	}
	slices.Sort(names)
	var applied []string
	for _, name := range names {
		version := strings.TrimSuffix(path.Base(name), ".sql")
		done, err := s.applyMigration(ctx, name, version)
		if err != nil {
			return applied, fmt.Errorf("migration %s: %w", version, err)
		}
		if done {
			applied = append(applied, version)
		}
	}
	return applied, nil
}

// applyMigration applies one migration unless schema_migrations has it, and reports whether it did.
// The lock comes first, before even the table is made: CREATE TABLE IF NOT EXISTS is not safe
// against itself on PostgreSQL, two sessions at once can both try to create it.
func (s *Store) applyMigration(ctx context.Context, name, version string) (bool, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	c := conn{x: tx, numbered: s.numbered}
	if s.dialect.MigrationLock != "" {
		if _, err := c.exec(ctx, s.dialect.MigrationLock); err != nil {
			return false, fmt.Errorf("lock: %w", err)
		}
	}
	if _, err := c.exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return false, fmt.Errorf("create migrations table: %w", err)
	}
	var n int
	if err := c.row(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
		return false, err
	}
	if n > 0 {
		return false, nil
	}
	body, err := fs.ReadFile(s.dialect.Migrations, name)
	if err != nil {
		return false, err
	}
	// Run as written, without arguments: several statements in one, which both drivers allow then.
	if _, err := tx.ExecContext(ctx, string(body)); err != nil {
		return false, err
	}
	if _, err := c.exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, version, time.Now().UnixMilli()); err != nil {
		return false, err
	}
	return true, tx.Commit()
}
