package server

import (
	"context"
	"log/slog"

	"github.com/telemed/telemed/internal/config"
	"github.com/telemed/telemed/internal/store/postgres"
	"github.com/telemed/telemed/internal/store/sqlite"
	"github.com/telemed/telemed/internal/store/sqlstore"
)

// OpenStore opens where telemed keeps its records, migrated: the PostgreSQL database that storeURL
// names (postgres:// or postgresql://), or when storeURL is empty the SQLite file in dataDir
// (created if need be). serve and every one-off command open their store here, so that they
// agree on what --data and --store mean.
//
// The data folder is made 0700 and the database's files 0600, with a warning in slog.Default()'s
// log for a mode that was wider.
func OpenStore(ctx context.Context, dataDir, storeURL string) (*sqlstore.Store, error) {
	return openStore(ctx, dataDir, storeURL, slog.Default())
}

// openStore is OpenStore logging to log.
func openStore(ctx context.Context, dataDir, storeURL string, log *slog.Logger) (*sqlstore.Store, error) {
	if err := config.CheckStoreURL(storeURL); err != nil {
		return nil, err
	}
	if storeURL != "" {
		return postgres.Open(ctx, storeURL)
	}
	if err := prepareDataDir(dataDir, log); err != nil {
		return nil, err
	}
	if err := prepareDatabase(dataDir, log); err != nil {
		return nil, err
	}
	st, err := sqlite.Open(ctx, config.DatabasePath(dataDir))
	if err != nil {
		return nil, err
	}
	// SQLite gives the -wal and -shm files it made while migrating the database's mode; checked
	// again, as they hold the same records.
	if err := secureDatabase(dataDir, log); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}
