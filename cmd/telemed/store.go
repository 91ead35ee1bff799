package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/telemed/telemed/internal/config"
	"github.com/telemed/telemed/internal/server"
	"github.com/telemed/telemed/internal/store/postgres"
	"github.com/telemed/telemed/internal/store/storecopy"
)

// migrate applies the embedded migrations to the store and says what it applied. serve does the
// same at start; this lets an operator do it first, on its own, and see the outcome.
func migrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, at := newFlags("telemed migrate", stderr)
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	st, err := server.OpenStore(ctx, at.data, at.store)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer st.Close()
	where := "SQLite in " + config.DatabasePath(at.data)
	if at.store != "" {
		where = postgres.Redact(at.store)
	}
	var current string
	if err := st.DB().QueryRowContext(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("migrate: read the schema's version: %w", err)
	}
	if applied := st.Applied(); len(applied) > 0 {
		fmt.Fprintf(stdout, "Applied %d migrations to %s: %s. The schema is at %s.\n", len(applied), where, strings.Join(applied, ", "), current)
		return nil
	}
	fmt.Fprintf(stdout, "The schema of %s is current (%s): nothing to apply.\n", where, current)
	return nil
}

// storeCopy copies every record of one store into an empty PostgreSQL database and verifies it.
func storeCopy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("telemed store copy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from", "", "the store to copy: a data `folder` (its SQLite database) or a postgres:// URL (required)")
	to := fs.String("to", "", "the PostgreSQL database to copy into, postgres://... (required; migrated first)")
	replace := fs.Bool("replace", false, "empty a target that has records first, its audit trail included (default: refuse it)")
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	if *from == "" || *to == "" {
		return errors.New("store copy: --from and --to are required")
	}
	if !postgres.IsURL(*to) {
		return fmt.Errorf("store copy: --to %s: want postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (or postgresql://...)", postgres.Redact(*to))
	}
	if *from == *to {
		// Its own target: emptying it would wait forever on the copy's own read of it.
		return errors.New("store copy: --from and --to are the same store")
	}
	fromData, fromURL := *from, ""
	if postgres.IsURL(*from) {
		fromData, fromURL = "", *from
	} else if _, err := os.Stat(config.DatabasePath(*from)); err != nil {
		return fmt.Errorf("store copy: --from %s: no telemed database there (%s): give the data folder serve ran with, or a postgres:// URL", *from, config.DatabasePath(*from))
	}
	src, err := server.OpenStore(ctx, fromData, fromURL)
	if err != nil {
		return fmt.Errorf("store copy: source: %w", err)
	}
	defer src.Close()
	dst, err := server.OpenStore(ctx, "", *to)
	if err != nil {
		return fmt.Errorf("store copy: target: %w", err)
	}
	defer dst.Close()
	fmt.Fprintf(stdout, "Copying %s into %s\n", *from, postgres.Redact(*to))
	counts, err := storecopy.Copy(ctx, src, dst, storecopy.Options{Replace: *replace, Progress: stdout})
	if errors.Is(err, storecopy.ErrNotEmpty) {
		return fmt.Errorf("store copy: %w; copy into an empty database, or pass --replace to empty it first (audit trail included)", err)
	}
	if counts != nil {
		fmt.Fprintln(stdout)
		storecopy.WriteCounts(stdout, counts)
	}
	if err != nil {
		return fmt.Errorf("store copy: %w", err)
	}
	fmt.Fprintf(stdout, "\nEvery table has as many rows in the target as in the source. Start serve with --store on it.\n")
	return nil
}
