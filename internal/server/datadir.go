package server

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"

	"github.com/telemed/telemed/internal/config"
)

// Modes of the data folder and of the database's files: the database holds the link secret and
// patient records, so only the account telemed runs as may read them.
const (
	dataDirMode  fs.FileMode = 0o700
	databaseMode fs.FileMode = 0o600
)

// databaseFiles are the SQLite file and the two SQLite keeps beside it in WAL mode.
func databaseFiles(dataDir string) []string {
	db := config.DatabasePath(dataDir)
	return []string{db, db + "-wal", db + "-shm"}
}

// prepareDataDir creates dataDir 0700, or narrows an existing folder to 0700: MkdirAll sets the
// mode only of what it creates, and an operator's folder is often 0755. A mode it changes is
// logged, so that the operator learns why; a mode it cannot change is an error.
func prepareDataDir(dataDir string, log *slog.Logger) error {
	if err := os.MkdirAll(dataDir, dataDirMode); err != nil {
		return fmt.Errorf("data folder %s: %w", dataDir, err)
	}
	return narrowMode(dataDir, dataDirMode, "data folder", log)
}

// prepareDatabase makes the database file 0600 before SQLite opens it, creating it empty if need
// be: SQLite gives its -wal and -shm files the mode of the database, so they are born 0600 too.
// Files left by an earlier run with a wider mode are narrowed.
func prepareDatabase(dataDir string, log *slog.Logger) error {
	files := databaseFiles(dataDir)
	f, err := os.OpenFile(files[0], os.O_RDWR|os.O_CREATE, databaseMode)
	if err != nil {
		return fmt.Errorf("database %s: %w", files[0], err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("database %s: %w", files[0], err)
	}
	return secureDatabase(dataDir, log)
}

// secureDatabase narrows the mode of every database file that exists to 0600.
func secureDatabase(dataDir string, log *slog.Logger) error {
	for _, p := range databaseFiles(dataDir) {
		if err := narrowMode(p, databaseMode, "database file", log); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// narrowMode sets path's permission bits to want when they differ (wider, as a rule), with a warning
// saying what changed.
func narrowMode(path string, want fs.FileMode, what string, log *slog.Logger) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, path, err)
	}
	got := fi.Mode().Perm()
	if got == want {
		return nil
	}
	if err := os.Chmod(path, want); err != nil {
		return fmt.Errorf("%s %s has mode %04o and it could not be narrowed to %04o (it holds secrets "+
			"and patient records; change its mode or owner, or give another --data): %w", what, path, got, want, err)
	}
	log.Warn(what+" mode changed: it holds secrets and patient records, for this account only", "path", path,
		"was", fmt.Sprintf("%04o", got), "now", fmt.Sprintf("%04o", want))
	return nil
}
