package server_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/telemed/telemed/internal/config"
	"github.com/telemed/telemed/internal/server"
)

// wideDataDir returns a data folder made 0755, as an operator's often is, holding a database an
// earlier run left 0644 with its -wal file.
func wideDataDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := server.OpenStore(context.Background(), dir, "")
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	db := config.DatabasePath(dir)
	if err := os.WriteFile(db+"-wal", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for p, mode := range map[string]os.FileMode{dir: 0o755, db: 0o644, db + "-wal": 0o644} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// checkModes fails unless dir is 0700 and every database file in it 0600.
func checkModes(t *testing.T, dir string) {
	t.Helper()
	checkMode(t, dir, 0o700)
	db := config.DatabasePath(dir)
	checkMode(t, db, 0o600)
	for _, p := range []string{db + "-wal", db + "-shm"} {
		if _, err := os.Stat(p); err == nil {
			checkMode(t, p, 0o600)
		}
	}
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %04o, want %04o", filepath.Base(path), got, want)
	}
}

// syncBuffer is a log that the server may write while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServeNarrowsDataDir: serve given a 0755 data folder with a 0644 database leaves them 0700 and
// 0600, the -wal and -shm files too, and says so in its log.
func TestServeNarrowsDataDir(t *testing.T) {
	dir := wideDataDir(t)
	var logs syncBuffer
	cfg := config.DefaultServe()
	cfg.HTTPAddr, cfg.DataDir, cfg.TURN = "127.0.0.1:0", dir, false
	srv, err := server.Start(context.Background(), cfg, server.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	checkModes(t, dir)
	for _, want := range []string{"data folder mode changed", "database file mode changed", "was=0755", "was=0644", "now=0600"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

// TestOpenStoreNarrowsDataDir: a one-off command (they all open their store with OpenStore) does the same.
func TestOpenStoreNarrowsDataDir(t *testing.T) {
	dir := wideDataDir(t)
	st, err := server.OpenStore(context.Background(), dir, "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	checkModes(t, dir)
}

// TestNewDataDirIsPrivate: a folder telemed creates, and the database it creates there, are private
// from the start.
func TestNewDataDirIsPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new")
	st, err := server.OpenStore(context.Background(), dir, "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	checkModes(t, dir)
	if _, err := os.Stat(config.DatabasePath(dir) + "-wal"); err != nil {
		t.Errorf("no -wal file to check: %v", err)
	}
}
