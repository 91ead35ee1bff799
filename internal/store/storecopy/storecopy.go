// Package storecopy moves a clinic's records from one SQL store to another, such as from the
// embedded SQLite to PostgreSQL when a clinic grows to several nodes: every table in foreign-key
// order, in batches, in one transaction on the target, then verified row count by row count, the
// audit trail included.
package storecopy

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/telemed/telemed/internal/store/sqlstore"
)

// Table is one table to copy, and the column its rows are read in order of, where the order is
// kept: the audit trail's sequence, and the insertion order that breaks ties of created_at.
type Table struct {
	Name string
	// Order, when set, is the column the rows are read and inserted in the order of; "insertion"
	// is the source dialect's InsertOrder (rowid on SQLite).
	Order string
}

// Tables are telemed's tables, each after those it refers to. schema_migrations is not among them:
// the target is migrated by opening it.
var Tables = []Table{
	{Name: "providers"}, {Name: "sessions"}, {Name: "api_tokens"}, {Name: "patients"},
	{Name: "consultations"}, {Name: "transcripts"},
	{Name: "invitations", Order: "insertion"}, {Name: "quality_reports", Order: "insertion"},
	{Name: "enrollments"}, {Name: "devices"}, {Name: "batches"}, {Name: "observations"},
	{Name: "thresholds"}, {Name: "alerts"}, {Name: "alert_states"},
	{Name: "audit", Order: "seq"}, {Name: "settings"},
}

// Errors of Copy.
var (
	// ErrNotEmpty is returned when the target has rows and Options.Replace is not set.
	ErrNotEmpty = errors.New("the target store is not empty")
	// ErrMismatch is returned when a table's rows in the target are not as many as in the source.
	ErrMismatch = errors.New("row counts differ")
)

// Options of Copy.
type Options struct {
	// Replace empties a target that has rows before copying, its audit trail included. Default
	// false: such a target is refused (ErrNotEmpty).
	Replace bool
	// BatchSize is how many rows are read before they are inserted together. Default 1000.
	BatchSize int
	// Progress receives a line each ProgressEvery rows of a table, and one when it is done. Default:
	// nothing is written.
	Progress io.Writer
	// ProgressEvery is how many rows between progress lines. Default 25000.
	ProgressEvery int
}

// Count is a table's rows in the source and, after the copy, in the target.
type Count struct {
	Table          string
	Source, Target int64
}

// Copy copies every table of from into to, and then counts each table's rows on both sides. The
// source is read in one read-only transaction, so that what is copied and what is counted are the
// same records even if a server still writes there (its later writes are not copied); the target
// is written in one transaction, so that a failed copy leaves it as it was. The counts are
// returned in both cases when they were made, with ErrMismatch if any differ.
func Copy(ctx context.Context, from, to *sqlstore.Store, o Options) ([]Count, error) {
	if o.BatchSize <= 0 {
		o.BatchSize = 1000
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 25000
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	src, err := from.DB().BeginTx(ctx, &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead})
	if err != nil {
		return nil, fmt.Errorf("read the source: %w", err)
	}
	defer src.Rollback()
	counts := make([]Count, len(Tables))
	for i, t := range Tables {
		counts[i].Table = t.Name
		if counts[i].Source, err = count(ctx, src, t.Name); err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
	}
	if err := copyAll(ctx, src, from.Dialect(), to, counts, o); err != nil {
		return nil, err
	}
	return verify(ctx, to.DB(), counts)
}

// copyAll writes every table of src into to, in one transaction.
func copyAll(ctx context.Context, src *sql.Tx, d sqlstore.Dialect, to *sqlstore.Store, counts []Count, o Options) error {
	dst, err := to.DB().BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("write the target: %w", err)
	}
	defer dst.Rollback()
	if err := prepareTarget(ctx, dst, to.Dialect(), o.Replace); err != nil {
		return err
	}
	for i, t := range Tables {
		if err := copyTable(ctx, src, dst, d, to, t, counts[i].Source, o); err != nil {
			return fmt.Errorf("copy %s: %w", t.Name, err)
		}
	}
	if to.Dialect().Name == "postgres" {
		if err := resetIdentities(ctx, dst); err != nil {
			return err
		}
	}
	if err := dst.Commit(); err != nil {
		return fmt.Errorf("commit the copy: %w", err)
	}
	return nil
}

// prepareTarget refuses a target with rows in it, or empties it when replace is set.
func prepareTarget(ctx context.Context, dst *sql.Tx, d sqlstore.Dialect, replace bool) error {
	var full []string
	for _, t := range Tables {
		n, err := count(ctx, dst, t.Name)
		if err != nil {
			return fmt.Errorf("target: %w", err)
		}
		if n > 0 {
			full = append(full, fmt.Sprintf("%s (%d rows)", t.Name, n))
		}
	}
	if len(full) == 0 {
		return nil
	}
	if !replace {
		return fmt.Errorf("%w: %s", ErrNotEmpty, strings.Join(full, ", "))
	}
	if d.Name != "postgres" {
		return fmt.Errorf("emptying a %s target is not supported: give an empty one", d.Name)
	}
	names := make([]string, len(Tables))
	for i, t := range Tables {
		names[i] = t.Name
	}
	// The audit trail refuses TRUNCATE; the operator asked for it here, for this transaction only
	// (ALTER TABLE is transactional: a failed copy leaves the trigger on).
	for _, q := range []string{
		`ALTER TABLE audit DISABLE TRIGGER audit_no_truncate`,
		`TRUNCATE ` + strings.Join(names, ", "),
		`ALTER TABLE audit ENABLE TRIGGER audit_no_truncate`,
	} {
		if _, err := dst.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("empty the target: %w", err)
		}
	}
	return nil
}

func count(ctx context.Context, tx *sql.Tx, table string) (int64, error) {
	var n int64
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s: %w", table, err)
	}
	return n, nil
}

// columns are the names of a table's columns.
func columns(ctx context.Context, tx *sql.Tx, table string) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT * FROM `+table+` WHERE 1 = 0`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return rows.Columns()
}

// copyTable copies the columns that the source and the target both have; a column the target has
// alone takes its default (PostgreSQL's seq of invitations, filled in the order they are read).
func copyTable(ctx context.Context, src, dst *sql.Tx, d sqlstore.Dialect, to *sqlstore.Store, t Table, total int64, o Options) error {
	have, err := columns(ctx, src, t.Name)
	if err != nil {
		return fmt.Errorf("source columns: %w", err)
	}
	want, err := columns(ctx, dst, t.Name)
	if err != nil {
		return fmt.Errorf("target columns: %w", err)
	}
	cols := slices.DeleteFunc(slices.Clone(have), func(c string) bool { return !slices.Contains(want, c) })
	query := `SELECT ` + strings.Join(cols, ", ") + ` FROM ` + t.Name
	switch t.Order {
	case "":
	case "insertion":
		query += ` ORDER BY ` + d.InsertOrder
	default:
		query += ` ORDER BY ` + t.Order
	}
	rows, err := src.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	var batch [][]any
	var done int64
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		if batch = append(batch, vals); len(batch) == o.BatchSize {
			if err := to.InsertRows(ctx, dst, t.Name, cols, batch); err != nil {
				return err
			}
			done += int64(len(batch))
			batch = batch[:0]
			if done%int64(o.ProgressEvery) < int64(o.BatchSize) {
				fmt.Fprintf(o.Progress, "  %s: %d of %d rows\n", t.Name, done, total)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if err := to.InsertRows(ctx, dst, t.Name, cols, batch); err != nil {
		return err
	}
	fmt.Fprintf(o.Progress, "%s: %d rows copied\n", t.Name, done+int64(len(batch)))
	return nil
}

// resetIdentities moves each identity column's sequence past the largest number copied, so that
// the next line of the audit trail (and the next invitation) takes a new number.
func resetIdentities(ctx context.Context, dst *sql.Tx) error {
	rows, err := dst.QueryContext(ctx, `SELECT table_name, column_name FROM information_schema.columns
		WHERE is_identity = 'YES' AND table_schema = current_schema()`)
	if err != nil {
		return fmt.Errorf("identity columns: %w", err)
	}
	var idents [][2]string
	for rows.Next() {
		var t, c string
		if err := rows.Scan(&t, &c); err != nil {
			rows.Close()
			return err
		}
		idents = append(idents, [2]string{t, c})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, tc := range idents {
		q := fmt.Sprintf(`SELECT setval(pg_get_serial_sequence('%s', '%s'), coalesce(max(%s), 0) + 1, false) FROM %s`, tc[0], tc[1], tc[1], tc[0])
		if _, err := dst.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("sequence of %s.%s: %w", tc[0], tc[1], err)
		}
	}
	return nil
}

// verify counts the target's tables after the copy, beside the source's counts.
func verify(ctx context.Context, db *sql.DB, counts []Count) ([]Count, error) {
	var differ []string
	for i := range counts {
		c := &counts[i]
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM `+c.Table).Scan(&c.Target); err != nil {
			return counts, fmt.Errorf("verify: count %s: %w", c.Table, err)
		}
		if c.Target != c.Source {
			differ = append(differ, fmt.Sprintf("%s (%d in the source, %d in the target)", c.Table, c.Source, c.Target))
		}
	}
	if len(differ) > 0 {
		return counts, fmt.Errorf("%w: %s", ErrMismatch, strings.Join(differ, ", "))
	}
	return counts, nil
}

// WriteCounts prints counts as a table: each table's rows in the source and the target.
func WriteCounts(w io.Writer, counts []Count) {
	fmt.Fprintf(w, "%-16s %12s %12s\n", "table", "source", "target")
	for _, c := range counts {
		mark := ""
		if c.Source != c.Target {
			mark = "  differ"
		}
		fmt.Fprintf(w, "%-16s %12d %12d%s\n", c.Table, c.Source, c.Target, mark)
	}
}
