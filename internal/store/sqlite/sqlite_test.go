package sqlite

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/telemed/telemed/internal/store"
	"github.com/telemed/telemed/internal/store/sqlstore"
	"github.com/telemed/telemed/internal/store/storetest"
)

func open(t *testing.T) *sqlstore.Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "telemed.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t) })
}

func TestReopenKeepsDataAndMigratesOnce(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "telemed.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.EnsureSetting(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if v, err := s.Setting(ctx, "k"); err != nil || v != "v" {
		t.Fatalf("after reopen: %q, %v", v, err)
	}
	var mode string
	s.DB().QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode)
	if mode != "wal" {
		t.Errorf("journal_mode = %q, want wal", mode)
	}
}

func TestAuditIsAppendOnly(t *testing.T) {
	storetest.AuditAppendOnly(t, open(t))
}

func TestConcurrentOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "telemed.db")
	storetest.ConcurrentOpen(t, 8, func(ctx context.Context) (storetest.SQLStore, error) { return Open(ctx, path) })
}

// A data folder may have any name: the database must land inside it, not at a prefix of its path.
func TestOddFolderNames(t *testing.T) {
	ctx := context.Background()
	for _, name := range []string{"clinic#1", "what?", "100%", "two words"} {
		dir := filepath.Join(t.TempDir(), name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "telemed.db")
		s, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := s.EnsureSetting(ctx, "k", name); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("%s: database not where it belongs: %v", name, err)
		}
	}
}
