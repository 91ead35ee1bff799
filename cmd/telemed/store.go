package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/telemed/telemed/internal/config"
	"github.com/telemed/telemed/internal/server"
	"github.com/telemed/telemed/internal/store/postgres"
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
