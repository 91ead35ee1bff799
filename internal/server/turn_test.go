package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/telemed/telemed/internal/config"
	"github.com/telemed/telemed/internal/store/postgres/pgtest"
)

// TestNodesSharingAStoreShareTheTURNSecret: nodes on one PostgreSQL database, each with a data
// folder of its own and no --turn-secret, hand out TURN credentials under one secret, so that a
// credential from one node works on every node's relay; a node on another database has its own.
func TestNodesSharingAStoreShareTheTURNSecret(t *testing.T) {
	shared := pgtest.URL(t)
	start := func(storeURL string) *Server {
		cfg := config.DefaultServe()
		cfg.HTTPAddr, cfg.TURNAddr, cfg.DataDir, cfg.StoreURL = "127.0.0.1:0", "127.0.0.1:0", t.TempDir(), storeURL
		s, err := Start(context.Background(), cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b, other := start(shared), start(shared), start(pgtest.URL(t))
	if len(a.turnSecret) < 16 || !bytes.Equal(a.turnSecret, b.turnSecret) {
		t.Fatalf("two nodes on one store have TURN secrets %q and %q; want one shared secret", a.turnSecret, b.turnSecret)
	}
	if bytes.Equal(a.turnSecret, other.turnSecret) {
		t.Fatal("a node on another database has the same TURN secret")
	}
}
