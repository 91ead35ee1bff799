package storecopy_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/store/postgres/pgtest"
	"github.com/telemed/telemed/internal/store/sqlite"
	"github.com/telemed/telemed/internal/store/sqlstore"
	"github.com/telemed/telemed/internal/store/storecopy"
)

func openSQLite(t *testing.T) *sqlstore.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "telemed.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func tableNames(t *testing.T, s *sqlstore.Store, query string) []string {
	t.Helper()
	rows, err := s.DB().Query(query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		if n != "schema_migrations" && !strings.HasPrefix(n, "sqlite_") {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// A migration that adds a table must add it to Tables too, or the copy would leave it behind.
func TestTablesAreEveryTable(t *testing.T) {
	var listed []string
	for _, tb := range storecopy.Tables {
		listed = append(listed, tb.Name)
	}
	slices.Sort(listed)
	lite := tableNames(t, openSQLite(t), `SELECT name FROM sqlite_master WHERE type = 'table'`)
	if !slices.Equal(lite, listed) {
		t.Errorf("SQLite's tables %v, storecopy.Tables %v", lite, listed)
	}
	pg := tableNames(t, pgtest.Open(t), `SELECT tablename FROM pg_tables WHERE schemaname = current_schema()`)
	if !slices.Equal(pg, listed) {
		t.Errorf("PostgreSQL's tables %v, storecopy.Tables %v", pg, listed)
	}
}

// The copy keeps the audit trail's numbers and order, the trail goes on from there, and it is
// still append-only after a copy that emptied the target.
func TestCopyAuditAndReplace(t *testing.T) {
	ctx := context.Background()
	src, dst := openSQLite(t), pgtest.Open(t)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i, a := range []string{consult.AuditCreated, consult.AuditJoined, consult.AuditLeft} {
		if err := src.AppendAudit(ctx, consult.AuditEvent{At: t0.Add(time.Duration(i) * time.Second), Actor: "u_1", Action: a, ConsultationID: "c_1"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := dst.EnsureSetting(ctx, "base_url", "http://elsewhere"); err != nil {
		t.Fatal(err)
	}
	if _, err := storecopy.Copy(ctx, src, dst, storecopy.Options{}); !errors.Is(err, storecopy.ErrNotEmpty) || !strings.Contains(err.Error(), "settings (1 rows)") {
		t.Fatalf("copy into a target with a setting: %v, want ErrNotEmpty naming settings", err)
	}
	var progress bytes.Buffer
	counts, err := storecopy.Copy(ctx, src, dst, storecopy.Options{Replace: true, Progress: &progress, BatchSize: 2, ProgressEvery: 2})
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(counts, func(c storecopy.Count) bool { return c.Table == "audit" }); counts[i].Source != 3 || counts[i].Target != 3 {
		t.Fatalf("audit counts %+v", counts[i])
	}
	if !strings.Contains(progress.String(), "audit: 2 of 3 rows") || !strings.Contains(progress.String(), "audit: 3 rows copied") {
		t.Errorf("progress:\n%s", progress.String())
	}
	if _, err := dst.Setting(ctx, "base_url"); err == nil {
		t.Error("--replace kept the target's setting")
	}
	if err := dst.AppendAudit(ctx, consult.AuditEvent{At: t0.Add(time.Minute), Actor: "u_1", Action: consult.AuditEnded, ConsultationID: "c_1"}); err != nil {
		t.Fatalf("the trail goes on after the copy: %v", err)
	}
	trail, err := dst.Audit(ctx, "c_1")
	if err != nil || len(trail) != 4 || trail[0].Action != consult.AuditCreated || trail[3].Action != consult.AuditEnded {
		t.Fatalf("trail after the copy: %+v, %v", trail, err)
	}
	for _, q := range []string{"TRUNCATE audit", "DELETE FROM audit"} {
		if _, err := dst.DB().Exec(q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s after a copy with Replace: %v, want refused", q, err)
		}
	}
}
