package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/telemed/telemed/internal/store"
)

// testProviders checks that providers are found by id and by email, the email in any case, and
// that an email cannot be used twice.
func testProviders(t *testing.T, s store.Accounts) {
	ctx := context.Background()
	if n, err := s.CountProviders(ctx); err != nil || n != 0 {
		t.Fatalf("CountProviders = %d, %v", n, err)
	}
	p := provider("u_1", "Grace@Clinic.example")
	must(t, s.CreateProvider(ctx, p))
	if err := s.CreateProvider(ctx, provider("u_2", "grace@clinic.example")); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate email (other case): %v, want ErrConflict", err)
	}
	got, err := s.ProviderByEmail(ctx, "grace@clinic.EXAMPLE")
	if err != nil || got != p {
		t.Fatalf("ProviderByEmail = %+v, %v; want %+v", got, err, p)
	}
	if got, err := s.ProviderByID(ctx, "u_1"); err != nil || got != p {
		t.Fatalf("ProviderByID = %+v, %v", got, err)
	}
	if _, err := s.ProviderByID(ctx, "u_9"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing provider: %v, want ErrNotFound", err)
	}
	if n, _ := s.CountProviders(ctx); n != 1 {
		t.Fatalf("CountProviders = %d", n)
	}
}

// testSessionsAndTokens checks that a session signs in its provider until it expires, that
// expired sessions are pruned, and that an API token signs in its provider.
func testSessionsAndTokens(t *testing.T, s store.Accounts) {
	ctx := context.Background()
	must(t, s.CreateProvider(ctx, provider("u_1", "a@b.example")))
	must(t, s.CreateSession(ctx, "h1", "u_1", t0.Add(time.Hour)))
	if p, err := s.SessionProvider(ctx, "h1", t0); err != nil || p.ID != "u_1" {
		t.Fatalf("SessionProvider = %+v, %v", p, err)
	}
	if _, err := s.SessionProvider(ctx, "h1", t0.Add(time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired session: %v, want ErrNotFound", err)
	}
	must(t, s.CreateSession(ctx, "h2", "u_1", t0.Add(2*time.Hour)))
	must(t, s.DeleteExpiredSessions(ctx, t0.Add(time.Hour)))
	if _, err := s.SessionProvider(ctx, "h2", t0); err != nil {
		t.Fatalf("unexpired session pruned: %v", err)
	}
	if _, err := s.SessionProvider(ctx, "h1", t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired session kept: %v", err)
	}
	must(t, s.DeleteSession(ctx, "h1"))
	if _, err := s.SessionProvider(ctx, "h1", t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted session: %v", err)
	}
	must(t, s.CreateAPIToken(ctx, "t1", "u_1", "ehr", t0))
	if p, err := s.APITokenProvider(ctx, "t1"); err != nil || p.ID != "u_1" {
		t.Fatalf("APITokenProvider = %+v, %v", p, err)
	}
	if _, err := s.APITokenProvider(ctx, "t2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown token: %v", err)
	}
}
