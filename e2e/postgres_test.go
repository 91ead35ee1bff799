package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/telemed/telemed/internal/config"
	"github.com/telemed/telemed/internal/store/postgres/pgtest"
)

// A server started with --store keeps its records in PostgreSQL: it is ready, and what it stores
// is there for the next server on the same database.
func TestServeOnPostgres(t *testing.T) {
	url := pgtest.URL(t)
	onPG := func(cfg *config.Serve) { cfg.StoreURL = url }
	e := startServerEnv(t, onPG, serverOptions())
	resp, err := http.Get(e.srv.BaseURL() + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /readyz on PostgreSQL: %v %v", resp, err)
	}
	resp.Body.Close()
	v := e.newConsultation(t, time.Hour)
	e.srv.Close()
	other := startServerConfig(t, onPG, serverOptions())
	p, err := other.Services().Accounts.ProviderByEmail(t.Context(), "grace@clinic.example")
	if err != nil {
		t.Fatalf("the provider on the next server: %v", err)
	}
	list, err := other.Services().Consultations.ListConsultations(t.Context(), p)
	if err != nil || len(list) != 1 || list[0].ID != v.ID {
		t.Fatalf("consultations on the next server: %+v, %v", list, err)
	}
}
