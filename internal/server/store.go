package server

import (
	"context"
	"fmt"
	"os"

	"github.com/telemed/telemed/internal/config"
	"github.com/telemed/telemed/internal/store/postgres"
	"github.com/telemed/telemed/internal/store/sqlite"
	"github.com/telemed/telemed/internal/store/sqlstore"
)

// OpenStore opens where telemed keeps its records, migrated: the PostgreSQL database that storeURL
// names (postgres:// or postgresql://), or when storeURL is empty the SQLite file in dataDir
// (created if need be). serve and every one-off command open their store here, so that they
// agree on what --data and --store mean.
func OpenStore(ctx context.Context, dataDir, storeURL string) (*sqlstore.Store, error) {
	if err := config.CheckStoreURL(storeURL); err != nil {
		return nil, err
	}
	if storeURL != "" {
		return postgres.Open(ctx, storeURL)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data folder %s: %w", dataDir, err)
	}
	return sqlite.Open(ctx, config.DatabasePath(dataDir))
}
