// Package sqlstore is the store.Store that telemed's SQL engines share: every query and transaction,
// written once on database/sql, run on SQLite (package sqlite) or PostgreSQL (package postgres)
// through a Dialect that says what differs between them: placeholders, how a constraint violation
// is reported, row locks, and the column that keeps insertion order.
//
// Sharing the code rather than copying it keeps the engines' behaviour the same by construction;
// storetest checks it on both.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/telemed/telemed/internal/store"
)

// Dialect is what differs between the engines. The queries are written for both: standard SQL
// with ? placeholders, ON CONFLICT upserts and RETURNING, which SQLite and PostgreSQL both accept.
type Dialect struct {
	// Name names the engine in messages: "sqlite", "postgres".
	Name string
	// Numbered placeholders ($1, $2, ...) replace the ? of the queries (PostgreSQL).
	Numbered bool
	// IsUnique reports a primary key or UNIQUE violation; IsForeignKey a foreign key violation.
	IsUnique, IsForeignKey func(error) bool
	// LockRow ends a SELECT of the row that a write depends on, to hold it until the transaction
	// ends (" FOR UPDATE"). Empty on SQLite, whose write transactions already hold the whole
	// database (they begin IMMEDIATE).
	LockRow string
	// InsertOrder is the column that orders a table's rows as inserted, which breaks ties between
	// rows made in the same millisecond: SQLite's rowid, or an identity column.
	InsertOrder string
	// InsertRows is how many rows one INSERT of many rows carries (bounded by the engines' limit on
	// parameters): few on SQLite, which runs in the process, many on PostgreSQL, where each
	// statement is a round trip.
	InsertRows int
	// MigrationLock, when set, is run first in each migration's transaction so that nodes that
	// start at once migrate one after another (PostgreSQL's pg_advisory_xact_lock).
	MigrationLock string
	// Migrations holds the schema's files, migrations/*.sql, applied in the order of their names.
	Migrations fs.FS
}

// Store is a store.Store on a SQL database.
type Store struct {
	conn
	db      *sql.DB
	dialect Dialect
	applied []string
}

var _ store.Store = (*Store)(nil)

// Open applies the pending migrations of d to db and returns the store on it. It takes db over:
// closing the store closes db, and so does a failed Open.
func Open(ctx context.Context, db *sql.DB, d Dialect) (*Store, error) {
	s := &Store{conn: conn{x: db, numbered: d.Numbered}, db: db, dialect: d}
	applied, err := s.migrate(ctx)
	if err != nil {
		db.Close()
		return nil, err
	}
	s.applied = applied
	return s, nil
}

// DB is the database under the store, for tools that work on whole tables (store copy) and for
// tests that check what the store alone cannot (that the audit trail refuses changes).
func (s *Store) DB() *sql.DB { return s.db }

// Dialect is the engine's dialect.
func (s *Store) Dialect() Dialect { return s.dialect }

// Applied lists the migrations that Open applied, oldest first; none when the schema was current.
func (s *Store) Applied() []string { return s.applied }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// execer is what a query runs on: the database or a transaction.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

// conn runs the queries, written with ? placeholders, in the engine's placeholders.
type conn struct {
	x        execer
	numbered bool
}

func (c conn) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return c.x.ExecContext(ctx, c.bind(query), args...)
}

func (c conn) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return c.x.QueryContext(ctx, c.bind(query), args...)
}

func (c conn) row(ctx context.Context, query string, args ...any) *sql.Row {
	return c.x.QueryRowContext(ctx, c.bind(query), args...)
}

// bind returns query in the engine's placeholders: as written for SQLite, each ? outside a quoted
// string numbered ($1, $2, ...) for PostgreSQL.
func (c conn) bind(query string) string {
	if !c.numbered || !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n, quoted := 0, false
	for _, r := range query {
		switch {
		case r == '\'':
			quoted = !quoted
		case r == '?' && !quoted:
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// inTx runs fn in a transaction, committed if fn returns nil.
func (s *Store) inTx(ctx context.Context, fn func(c conn) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(conn{x: tx, numbered: s.numbered}); err != nil {
		return err
	}
	return tx.Commit()
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

// fromNullMS is fromMS of a column that may be NULL (nil then).
func fromNullMS(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMS(v.Int64)
	return &t
}

// scanner is a row to scan: *sql.Row or *sql.Rows.
type scanner interface{ Scan(...any) error }

// queryAll runs a query and scans each of its rows with scan.
func queryAll[T any](ctx context.Context, c conn, scan func(row scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := c.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func nullString(v string) sql.NullString { return sql.NullString{String: v, Valid: v != ""} }

func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}

// setOnce runs an UPDATE that sets a time unless it is set (coalesce), on the row with this id;
// store.ErrNotFound if there is no such row.
func (s *Store) setOnce(ctx context.Context, query string, at time.Time, id string) error {
	res, err := s.exec(ctx, query, ms(at), id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// insertRows inserts rows into table's columns, per rows at a time in one INSERT (at most as
// many as keep a statement under both engines' limit on parameters, SQLite's 32766 being the
// lower). The statement of per rows is prepared once and run for each full chunk: compiling a
// long statement again for each chunk costs SQLite more than it saves, while PostgreSQL across a
// network gains most from few round trips. The rest goes in one statement of its own.
func insertRows(ctx context.Context, c conn, per int, table string, columns []string, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	per = max(1, min(per, 30000/len(columns)))
	one := "(?" + strings.Repeat(", ?", len(columns)-1) + ")"
	head := "INSERT INTO " + table + " (" + strings.Join(columns, ", ") + ") VALUES "
	statement := func(n int) string { return c.bind(head + one + strings.Repeat(", "+one, n-1)) }
	args := func(rows [][]any) []any {
		out := make([]any, 0, len(rows)*len(columns))
		for _, r := range rows {
			out = append(out, r...)
		}
		return out
	}
	if len(rows) >= per {
		st, err := c.x.PrepareContext(ctx, statement(per))
		if err != nil {
			return fmt.Errorf("insert into %s: %w", table, err)
		}
		defer st.Close()
		for ; len(rows) >= per; rows = rows[per:] {
			if _, err := st.ExecContext(ctx, args(rows[:per])...); err != nil {
				return fmt.Errorf("insert into %s: %w", table, err)
			}
		}
	}
	if len(rows) > 0 {
		if _, err := c.x.ExecContext(ctx, statement(len(rows)), args(rows)...); err != nil {
			return fmt.Errorf("insert into %s: %w", table, err)
		}
	}
	return nil
}

// InsertRows inserts rows into table's columns in multi-row statements, in one transaction, for
// tools that fill whole tables (store copy). The rows' values are those the driver takes.
func (s *Store) InsertRows(ctx context.Context, tx *sql.Tx, table string, columns []string, rows [][]any) error {
	return insertRows(ctx, conn{x: tx, numbered: s.numbered}, s.dialect.InsertRows, table, columns, rows)
}
