// Package server assembles a running telemed from its configuration: store, use cases, signaling,
// TURN and HTTP. `telemed serve` runs one; end-to-end tests start one on a free port with a temporary folder.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/telemed/telemed/internal/accounts"
	"github.com/telemed/telemed/internal/audit"
	"github.com/telemed/telemed/internal/cluster"
	"github.com/telemed/telemed/internal/cluster/signaling"
	"github.com/telemed/telemed/internal/config"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/consultations"
	"github.com/telemed/telemed/internal/httpapi"
	"github.com/telemed/telemed/internal/monitoring"
	"github.com/telemed/telemed/internal/signal"
	"github.com/telemed/telemed/internal/signal/hub"
	"github.com/telemed/telemed/internal/store"
	"github.com/telemed/telemed/internal/turn"
	"github.com/telemed/telemed/web"
)

// SettingBaseURL is where serve records its public URL, so that command-line tools run beside it
// print links that work.
const SettingBaseURL = "base_url"

// Options beyond the configuration, for tests.
type Options struct {
	Logger *slog.Logger
	// Now is the clock; time.Now if nil. Tests move it to expire links.
	Now func() time.Time
	// Signal overrides signaling options (timeouts, rate limits); Gatekeeper, Audit and Logger are set here.
	Signal signal.Options
	// TURNAllocationLifetime shortens TURN allocations so that tests see them refreshed. Default 10m.
	TURNAllocationLifetime time.Duration
}

// Server is a running telemed.
type Server struct {
	draining atomic.Bool // set by Close: GET /readyz answers 503
	cfg      config.Serve
	log      *slog.Logger
	store    store.Store
	services Services
	signal   *signal.Server
	http     *http.Server
	listener net.Listener
	baseURL  string
	served   chan error

	now        func() time.Time
	metrics    *prometheus.Registry
	turn       *turn.Server
	turnSecret []byte

	cancelBase context.CancelFunc
	alertsDone chan struct{}

	// redis is what the nodes share (--redis), and bus the monitoring events over it; nil for one
	// node. eventsDone is closed when the other nodes' events stop being received.
	redis      *cluster.Redis
	router     *signaling.Router // signaling's messages between the nodes, with redis
	bus        *cluster.EventBus
	eventsDone chan struct{}
	// storePing times /readyz's ping of the store.
	storePing prometheus.Histogram
}

// Services are telemed's use cases, built on one store.
type Services struct {
	Accounts      *accounts.Service
	Consultations *consultations.Service
	Monitoring    *monitoring.Service
}

// NewServices builds the use cases on st, for a server whose public URL is baseURL: serve runs them,
// and so does a one-off command beside it. now is the clock (time.Now if nil), log receives what
// an operator should see (slog.Default() if nil).
func NewServices(ctx context.Context, st store.Store, baseURL string, now func() time.Time, log *slog.Logger) (Services, error) {
	return newServices(ctx, st, baseURL, now, log, sharing{})
}

// sharing is what the use cases share with the other nodes: none for one node.
type sharing struct {
	bus         monitoring.Bus // monitoring events
	patientLock func(ctx context.Context, patientID string) (unlock func(), err error)
}

// newServices is NewServices with what the use cases share with the other nodes.
func newServices(ctx context.Context, st store.Store, baseURL string, now func() time.Time, log *slog.Logger, sh sharing) (Services, error) {
	links, err := consultations.LoadLinks(ctx, st, baseURL)
	if err != nil {
		return Services{}, err
	}
	trail := audit.New(st, now, log)
	var out Services
	if out.Accounts, err = accounts.New(accounts.Options{Store: st, Now: now, Logger: log}); err != nil {
		return Services{}, err
	}
	if out.Consultations, err = consultations.New(consultations.Options{Store: st, Links: links, Audit: trail, Now: now}); err != nil {
		return Services{}, err
	}
	out.Monitoring, err = monitoring.New(monitoring.Options{Store: st, Audit: trail, DeviceLinks: links, BaseURL: links.BaseURL(), Now: now, Bus: sh.bus,
		PatientLock: sh.patientLock})
	return out, err
}

// Start opens the data folder and the store, listens, and serves until Close.
func Start(ctx context.Context, cfg config.Serve, o Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	// The data folder holds the TURN secret and snapshots even when the records are in PostgreSQL.
	if err := prepareDataDir(cfg.DataDir, log); err != nil {
		return nil, err
	}
	st, err := openStore(ctx, cfg.DataDir, cfg.StoreURL, log)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, store: st, served: make(chan error, 1)}
	if err := s.start(ctx, o); err != nil {
		st.Close()
		s.closeRedis()
		return nil, err
	}
	return s, nil
}

func (s *Server) start(ctx context.Context, o Options) error {
	ln, err := net.Listen("tcp", s.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another telemed running? choose another with --http)", s.cfg.HTTPAddr, err)
	}
	s.listener = ln
	s.baseURL = s.cfg.BaseURL
	if s.baseURL == "" {
		s.baseURL = derivedBaseURL(ln.Addr().(*net.TCPAddr), s.cfg.TLSCert != "")
	}
	if err := s.store.PutSetting(ctx, SettingBaseURL, s.baseURL); err != nil {
		ln.Close()
		return fmt.Errorf("record base URL: %w", err)
	}
	reg := prometheus.NewRegistry()
	s.metrics = reg
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.registerStorePing(reg)
	if err := s.openRedis(ctx, o, reg); err != nil {
		ln.Close()
		return err
	}
	if s.services, err = newServices(ctx, s.store, s.baseURL, o.Now, s.log, s.sharing()); err != nil {
		ln.Close()
		return err
	}
	svc := s.services
	s.now = o.Now
	if s.cfg.TURN || len(s.cfg.TURNServers) > 0 {
		if s.turnSecret, err = s.loadTURNSecret(ctx); err != nil {
			ln.Close()
			return err
		}
	}
	if s.cfg.TURN {
		if err := s.startTURN(o, reg); err != nil {
			ln.Close()
			return err
		}
	}

	sig, err := signal.NewServer(s.signalOptions(o))
	if err != nil {
		ln.Close()
		s.closeTURN()
		return err
	}
	s.signal = sig

	handler := httpapi.New(httpapi.Options{
		Accounts: svc.Accounts, Consultations: svc.Consultations, Invitations: svc.Consultations, InvitationRevoked: sig.RemoveInvited,
		Patients: svc.Monitoring, Events: svc.Monitoring, Devices: svc.Monitoring, Export: svc.Monitoring,
		BaseURL: s.baseURL, Now: o.Now, Signaling: sig, EndConsultation: sig.EndConsultation, Static: web.Static,
		SecureCookies:  s.cfg.TLSCert != "" || strings.HasPrefix(s.baseURL, "https://"),
		AllowedOrigins: append(s.cfg.OriginHosts(), hostOf(s.baseURL)),
		Ready:          s.ready, Logger: s.log.With("component", "http"),
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		Present: sig.Present, DeviceRevoked: sig.Kick,
		Quality: svc.Consultations, TestICEServers: s.testICEServers, ICETransportPolicy: s.cfg.ICETransportPolicy,
	})
	s.serve(handler)
	return nil
}

// signalOptions are the signaling server's options: the tests' (o.Signal) with the configuration's
// ICE servers and origins, and the consultations' gatekeeper and audit.
func (s *Server) signalOptions(o Options) signal.Options {
	svc := s.services
	so := o.Signal
	if so.ICEServers == nil {
		so.ICEServers = s.iceServers
	}
	if so.ICETransportPolicy == "" {
		so.ICETransportPolicy = s.cfg.ICETransportPolicy
	}
	so.Logger = s.log.With("component", "signal")
	so.Now = o.Now
	so.AllowedOrigins = append(so.AllowedOrigins, s.cfg.OriginHosts()...)
	so.AllowedOrigins = append(so.AllowedOrigins, hostOf(s.baseURL))
	so.Gatekeeper = func(ctx context.Context, id, token string) (hub.Ticket, error) {
		t, err := svc.Consultations.Admit(ctx, id, token)
		if err != nil {
			return hub.Ticket{}, s.admitError(ctx, err)
		}
		return hub.Ticket{ConsultationID: t.Consultation.ID, Title: t.Consultation.Title,
			ProviderName: t.ProviderName, Role: t.Role, Expired: t.Expired, Subject: t.Subject, Name: t.Name}, nil
	}
	so.Removed = svc.Consultations.StopLink
	so.Metrics = s.metrics
	if s.redis != nil {
		rdb, prefix := s.redis.Client(), s.redis.Prefix()
		s.router = signaling.NewRouter(rdb, prefix, s.redis.NodeID(), s.log.With("component", "cluster"))
		if err := s.router.Register(s.metrics); err != nil {
			s.log.Error("cluster metrics", "err", err)
		}
		so.Rooms, so.Router, so.Node, so.NodeAlive = signaling.NewRooms(rdb, prefix), s.router, s.redis.NodeID(), s.redis.Alive
	} else if so.Snapshots == nil {
		so.Snapshots = settingSnapshots{s.store}
	}
	if so.MaxParticipants == 0 {
		so.MaxParticipants = s.cfg.MaxParticipants
	}
	so.Audit = func(ctx context.Context, e consult.AuditEvent) {
		svc.Consultations.Audit(context.WithoutCancel(ctx), e)
	}
	return so
}

// linkRefusals are the errors with which Consultations.Admit refuses a link; any other error is a
// failure to check it.
var linkRefusals = []error{consult.ErrBadToken, consult.ErrLinkExpired, consult.ErrWrongConsultation,
	consult.ErrEnded, consult.ErrRemoved, consult.ErrDeviceRevoked}

// admitError is err, from checking a link, with hub.ErrUnavailable wrapped in when the check failed
// and the store does not answer its ping (the one /readyz makes): the joiner is then told that the
// server cannot reach its database, to try again, rather than that it failed. The store is asked
// rather than the error's type read because a stopped database shows through several drivers'
// errors (a refused connection, a connection ended by the server, a broken pooled one).
func (s *Server) admitError(ctx context.Context, err error) error {
	for _, refusal := range linkRefusals {
		if errors.Is(err, refusal) {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if s.store.Ping(ctx) != nil {
		return fmt.Errorf("%w: %w", hub.ErrUnavailable, err)
	}
	return err
}

// serve serves handler on the listener until Close, and forwards alerts into consultations meanwhile.
func (s *Server) serve(handler http.Handler) {
	// Requests run under base, which Close cancels first: event streams end instead of holding up
	// the shutdown.
	base, cancelBase := context.WithCancel(context.Background())
	s.cancelBase = cancelBase
	s.alertsDone = make(chan struct{})
	go func() {
		defer close(s.alertsDone)
		s.services.Monitoring.ForwardAlerts(base, s.signal, s.log.With("component", "alerts"))
	}()
	s.receiveEvents(base)
	// Deadlines for plain requests; net/http clears them on the WebSocket upgrade.
	s.http = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return base },
		ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	go func() {
		var err error
		if s.cfg.TLSCert != "" {
			s.http.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			err = s.http.ServeTLS(s.listener, s.cfg.TLSCert, s.cfg.TLSKey)
		} else {
			err = s.http.Serve(s.listener)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.served <- err
	}()
}

func derivedBaseURL(a *net.TCPAddr, tls bool) string {
	scheme := "http"
	if tls {
		scheme = "https"
	}
	host := a.IP.String()
	if a.IP.IsUnspecified() {
		host = "localhost" // a browser on this machine; set --base-url for others
	}
	return scheme + "://" + net.JoinHostPort(host, fmt.Sprint(a.Port))
}

func hostOf(baseURL string) string {
	_, rest, _ := strings.Cut(baseURL, "://")
	return rest
}

// BaseURL is the public URL that links start with.
func (s *Server) BaseURL() string { return s.baseURL }

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.listener.Addr() }

// Services are the running use cases, for tests and tools.
func (s *Server) Services() Services { return s.services }

// Done delivers the error that stopped serving, or nil after Close.
func (s *Server) Done() <-chan error { return s.served }

// Close stops accepting, disconnects signaling clients, and closes Redis and the store.
func (s *Server) Close() error {
	s.draining.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.cancelBase()
	<-s.alertsDone
	err := s.http.Shutdown(ctx)
	err = errors.Join(err, s.signal.Close())
	if s.router != nil {
		s.router.Stop()
	}
	return errors.Join(err, s.closeTURN(), s.closeRedis(), s.store.Close())
}

func (s *Server) closeTURN() error {
	if s.turn == nil {
		return nil
	}
	return s.turn.Close()
}

// Metrics is the registry that GET /metrics serves.
func (s *Server) Metrics() *prometheus.Registry { return s.metrics }

// TURN is the embedded STUN/TURN server, or nil when --turn=false.
func (s *Server) TURN() *turn.Server { return s.turn }

// settingSnapshot is where a single node keeps its signaling state while it restarts.
const settingSnapshot = "signal_snapshot"

// settingSnapshots keeps signaling snapshots in the store's settings.
type settingSnapshots struct{ st store.Settings }

func (k settingSnapshots) LoadSnapshot(ctx context.Context) ([]byte, error) {
	v, err := k.st.Setting(ctx, settingSnapshot)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load signaling snapshot: %w", err)
	}
	// Loaded once: a later crash must not bring back places from before it.
	if err := k.st.DeleteSetting(ctx, settingSnapshot); err != nil {
		return nil, fmt.Errorf("load signaling snapshot: %w", err)
	}
	return []byte(v), nil
}

func (k settingSnapshots) SaveSnapshot(ctx context.Context, b []byte) error {
	if err := k.st.PutSetting(ctx, settingSnapshot, string(b)); err != nil {
		return fmt.Errorf("save signaling snapshot: %w", err)
	}
	return nil
}
