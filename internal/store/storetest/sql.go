package storetest

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/store"
)

// SQLStore is a store on a SQL database, with the database under it: what the checks of a SQL
// engine's schema need, which go around the store.
type SQLStore interface {
	store.Store
	// DB is the database under the store.
	DB() *sql.DB
	// Applied lists the migrations that opening the store applied.
	Applied() []string
}

// AuditAppendOnly checks that the audit trail refuses to change, not only through the store (which
// has no way to) but to anyone with the database: UPDATE and DELETE, and each statement of tamper
// (such as an engine's TRUNCATE), fail with an error saying the trail is append-only, and the line
// stays as it was written.
func AuditAppendOnly(t *testing.T, s SQLStore, tamper ...string) {
	ctx := context.Background()
	e := consult.AuditEvent{At: t0, Actor: "u_1", Action: consult.AuditJoined, ConsultationID: "c_1", Detail: "first"}
	must(t, s.AppendAudit(ctx, e))
	for _, q := range append([]string{"UPDATE audit SET actor = 'someone else'", "DELETE FROM audit"}, tamper...) {
		if _, err := s.DB().ExecContext(ctx, q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: err = %v, want it refused as append-only", q, err)
		}
	}
	trail, err := s.Audit(ctx, "c_1")
	if err != nil || len(trail) != 1 || trail[0] != e {
		t.Fatalf("after the attempts, the trail is %+v, %v; want the line as written", trail, err)
	}
	must(t, s.AppendAudit(ctx, consult.AuditEvent{At: t0, Actor: "u_1", Action: consult.AuditLeft, ConsultationID: "c_1"}))
}

// ConcurrentOpen checks that n stores opened at once on one new database, as n nodes starting
// together do, all open; that each migration was applied by exactly one of them; and that they then
// share one database: they agree on the setting that won and see each other's writes. open opens
// the same database each time.
func ConcurrentOpen(t *testing.T, n int, open func(ctx context.Context) (SQLStore, error)) {
	ctx := context.Background()
	stores := make([]SQLStore, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = open(ctx) })
	}
	wg.Wait()
	applied := map[string]int{}
	for i, s := range stores {
		if errs[i] != nil {
			t.Fatalf("store %d of %d opened at once: %v", i, n, errs[i])
		}
		t.Cleanup(func() { s.Close() })
		for _, v := range s.Applied() {
			applied[v]++
		}
	}
	var versions int
	must(t, stores[0].DB().QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&versions))
	if len(applied) != versions || versions == 0 {
		t.Fatalf("applied %v, schema_migrations has %d: want each migration applied once", applied, versions)
	}
	for v, k := range applied {
		if k != 1 {
			t.Errorf("migration %s applied by %d stores, want 1", v, k)
		}
	}
	values := make([]string, n)
	for i, s := range stores {
		wg.Go(func() {
			var err error
			if values[i], err = s.EnsureSetting(ctx, "node", fmt.Sprint("node ", i)); err != nil {
				t.Errorf("EnsureSetting on store %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	for i, v := range values {
		if v != values[0] {
			t.Fatalf("store %d kept %q, store 0 %q: nodes must agree on the value that won", i, v, values[0])
		}
	}
	must(t, stores[0].CreateProvider(ctx, provider("u_1", "a@b.example")))
	if p, err := stores[n-1].ProviderByID(ctx, "u_1"); err != nil || p.Email != "a@b.example" {
		t.Fatalf("another store's provider: %+v, %v", p, err)
	}
}
