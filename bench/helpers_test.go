package bench

import (
	"context"
	"io"
	"log/slog"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"

	"github.com/telemed/telemed/internal/config"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/server"
	"github.com/telemed/telemed/internal/service"
)

// benchPassword is the provider accounts' password (at least 12 characters).
const benchPassword = "correct horse battery staple"

// quiet is a logger that drops everything, so logging does not weigh on what is measured.
var quiet = slog.New(slog.DiscardHandler)

// env is a running telemed server on a free loopback port with one provider account.
type env struct {
	srv      *server.Server
	svc      *service.Service
	provider consult.Provider
}

func startServer(tb testing.TB) *env {
	tb.Helper()
	cfg := config.DefaultServe()
	cfg.HTTPAddr = "127.0.0.1:0"
	// Not tb.TempDir: its name comes from the benchmark's, which may hold a '#' (a repeated
	// sub-benchmark name), and the store's database URI does not escape one.
	dir, err := os.MkdirTemp("", "telemed-bench-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	cfg.DataDir = dir
	srv, err := server.Start(context.Background(), cfg, server.Options{Logger: quiet})
	if err != nil {
		tb.Fatalf("start server: %v", err)
	}
	tb.Cleanup(func() { srv.Close() })
	p, err := srv.Service().AddProvider(context.Background(), "grace@clinic.example", "Dr Grace Hopper", benchPassword)
	if err != nil {
		tb.Fatalf("add provider: %v", err)
	}
	return &env{srv: srv, svc: srv.Service(), provider: p}
}

func (e *env) newConsultation(tb testing.TB) service.ConsultationView {
	tb.Helper()
	v, err := e.svc.CreateConsultation(context.Background(), e.provider, "bench", service.NewConsultation{Title: "Bench", TTL: time.Hour})
	if err != nil {
		tb.Fatalf("create consultation: %v", err)
	}
	return v
}

// loopbackAPI returns a pion API whose peers gather only IPv4 loopback candidates, without mDNS (the
// settings of e2e's loopbackAPI): calls stay on this machine and do not depend on its other interfaces.
// Unlike e2e's, it discards pion's log, whose lines (an error when a data channel is closed while the
// other side still opens it) would break up the benchmark's output.
func loopbackAPI() *webrtc.API {
	var se webrtc.SettingEngine
	se.LoggerFactory = &logging.DefaultLoggerFactory{Writer: io.Discard, DefaultLogLevel: logging.LogLevelDisabled}
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		panic(err)
	}
	return webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(m))
}

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
