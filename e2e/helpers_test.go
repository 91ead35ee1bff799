// Package e2e holds tests that run telemed whole: a real server on a free loopback port with a
// temporary data folder, driven by Go clients and by real Chromium.
package e2e

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/telemed/telemed/client"
	"github.com/telemed/telemed/internal/config"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/consultations"
	"github.com/telemed/telemed/internal/loopback"
	"github.com/telemed/telemed/internal/server"
)

const testPassword = "correct horse battery staple"

// env is a running telemed with one provider account.
type env struct {
	t        *testing.T
	srv      *server.Server
	svc      server.Services
	provider consult.Provider
}

// unavailable skips a test whose tool or privilege this machine lacks, except in CI (CI=true), where
// the test command installs what the tests need and runs them as root: there it is a failure.
func unavailable(t testing.TB, why, ciRemedy, localRemedy string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s: %s", why, ciRemedy)
	}
	t.Skipf("%s: %s", why, localRemedy)
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("TELEMED_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func startServer(t testing.TB, o server.Options) *env {
	t.Helper()
	return startServerEnv(t, nil, o)
}

// startServerEnv is startServer with a configuration that configure may change.
func startServerEnv(t testing.TB, configure func(*config.Serve), o server.Options) *env {
	t.Helper()
	srv := startServerConfig(t, configure, o)
	p, err := srv.Services().Accounts.AddProvider(context.Background(), "grace@clinic.example", "Dr Grace Hopper", testPassword)
	if err != nil {
		t.Fatalf("add provider: %v", err)
	}
	return &env{srv: srv, svc: srv.Services(), provider: p}
}

// startServerWithoutProvider starts a server as a first run finds it: no accounts.
func startServerWithoutProvider(t testing.TB) *server.Server {
	t.Helper()
	return startServerWith(t, serverOptions())
}

func startServerWith(t testing.TB, o server.Options) *server.Server {
	t.Helper()
	return startServerConfig(t, nil, o)
}

// startServerConfig starts a server whose configuration configure may change from the tests'
// defaults: loopback ports chosen by the system, the embedded TURN on a free port.
func startServerConfig(t testing.TB, configure func(*config.Serve), o server.Options) *server.Server {
	t.Helper()
	cfg := config.DefaultServe()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.TURNAddr = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	if configure != nil {
		configure(&cfg)
	}
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	srv, err := server.Start(context.Background(), cfg, o)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func (e *env) newConsultation(t testing.TB, ttl time.Duration) consultations.ConsultationView {
	t.Helper()
	v, err := e.svc.Consultations.CreateConsultation(context.Background(), e.provider, "test", consultations.NewConsultation{Title: "Follow-up", TTL: ttl})
	if err != nil {
		t.Fatalf("create consultation: %v", err)
	}
	return v
}

// loopbackAPI is a pion API on loopback only: calls stay on this machine.
func loopbackAPI() *webrtc.API { return loopback.API(false, client.TuneSettingEngine) }

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// mustJoin joins a Go client (on loopback unless cfg says otherwise), failing the test if it cannot,
// and closes it when the test ends.
func mustJoin(t testing.TB, ctx context.Context, cfg client.Config) *client.Session {
	t.Helper()
	if cfg.API == nil {
		cfg.API = loopbackAPI()
	}
	s, err := client.Join(ctx, cfg)
	if err != nil {
		t.Fatalf("join %s: %v", cfg.Link, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
