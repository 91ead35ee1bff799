package server

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/telemed/telemed/internal/httpapi"
)

// registerStorePing adds the store's latency, as GET /readyz measures it, to reg.
func (s *Server) registerStorePing(reg prometheus.Registerer) {
	s.storePing = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "telemed_store_ping_duration_seconds",
		Help:    "Time the store takes to answer GET /readyz's ping.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	})
	reg.MustRegister(s.storePing)
}

// ready is GET /readyz's check: not shutting down, the store answers, and so does Redis when the
// nodes share one.
func (s *Server) ready(ctx context.Context) error {
	if s.draining.Load() {
		return httpapi.ErrDraining
	}
	start := time.Now()
	err := s.store.Ping(ctx)
	s.storePing.Observe(time.Since(start).Seconds())
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if s.redis != nil {
		if err := s.redis.Ping(ctx); err != nil {
			return fmt.Errorf("%w: %w", httpapi.ErrRedisDown, err)
		}
	}
	return nil
}
