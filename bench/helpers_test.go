package bench

import (
	"context"
	"log/slog"
	"os"
	"sort"
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

// benchPassword is the provider accounts' password (at least 12 characters).
const benchPassword = "correct horse battery staple"

// quiet is a logger that drops everything, so logging does not weigh on what is measured.
var quiet = slog.New(slog.DiscardHandler)

// env is a running telemed server on a free loopback port with one provider account.
type env struct {
	srv      *server.Server
	svc      server.Services
	provider consult.Provider
	dir      string // the data folder
}

// startServer starts a server on SQLite in a temporary data folder, with one provider account.
func startServer(tb testing.TB) *env { return startServerWith(tb, nil) }

// startServerWith is startServer with configure, if not nil, changing the configuration after the
// data folder is set (to put the server on PostgreSQL and Redis).
func startServerWith(tb testing.TB, configure func(*config.Serve)) *env {
	tb.Helper()
	e := startNode(tb, "", configure)
	p, err := e.svc.Accounts.AddProvider(context.Background(), "grace@clinic.example", "Dr Grace Hopper", benchPassword)
	if err != nil {
		tb.Fatalf("add provider: %v", err)
	}
	e.provider = p
	return e
}

// startNode starts a server with no provider account of its own: in data folder dir, or in a new
// temporary one if dir is "".
func startNode(tb testing.TB, dir string, configure func(*config.Serve)) *env {
	tb.Helper()
	cfg := config.DefaultServe()
	cfg.HTTPAddr = "127.0.0.1:0"
	// These benchmarks measure signaling against pion peers signaled in-process, which gather no
	// relay candidates; bench/turn.sh measures the relay.
	cfg.TURN = false
	// Not tb.TempDir: its name comes from the benchmark's, which may hold a '#' (a repeated
	// sub-benchmark name), and the store's database URI does not escape one.
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "telemed-bench-"); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { os.RemoveAll(dir) })
	}
	cfg.DataDir = dir
	if configure != nil {
		configure(&cfg)
	}
	srv, err := server.Start(context.Background(), cfg, server.Options{Logger: quiet})
	if err != nil {
		tb.Fatalf("start server: %v", err)
	}
	tb.Cleanup(func() { srv.Close() })
	return &env{srv: srv, svc: srv.Services(), dir: dir}
}

func (e *env) newConsultation(tb testing.TB) consultations.ConsultationView {
	tb.Helper()
	v, err := e.svc.Consultations.CreateConsultation(context.Background(), e.provider, "bench", consultations.NewConsultation{Title: "Bench", TTL: time.Hour})
	if err != nil {
		tb.Fatalf("create consultation: %v", err)
	}
	return v
}

// loopbackAPI is a pion API on loopback only, with pion's log discarded.
func loopbackAPI() *webrtc.API { return loopback.API(true, client.TuneSettingEngine) }

// ms converts a duration to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// quantile returns the q-quantile (0..1) of ds, nearest rank.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(q*float64(len(s)-1) + 0.5)
	return s[i]
}

// reportJoins reports the joins' mean, median and 95th percentile in milliseconds.
func reportJoins(b *testing.B, ds []time.Duration) {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	if len(ds) > 0 {
		b.ReportMetric(ms(sum)/float64(len(ds)), "ms/op")
	}
	b.ReportMetric(ms(quantile(ds, 0.5)), "p50-ms")
	b.ReportMetric(ms(quantile(ds, 0.95)), "p95-ms")
}
