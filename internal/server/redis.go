package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/telemed/telemed/internal/cluster"
)

// openRedis connects to --redis, when it is set, and makes the bus that carries monitoring events
// between the nodes on it. A Redis that does not answer at start stops the start: a node that
// cannot reach the others must not take traffic as if it could.
func (s *Server) openRedis(ctx context.Context, o Options, reg prometheus.Registerer) error {
	if s.cfg.Redis == "" {
		return nil
	}
	r, err := cluster.Open(ctx, s.cfg.Redis, cluster.Options{Prefix: s.cfg.RedisPrefix, Logger: s.log.With("component", "cluster"), Metrics: reg})
	if err != nil {
		return fmt.Errorf("--redis: %w", err)
	}
	bus, err := cluster.NewEventBus(ctx, r, cluster.EventsOptions{})
	if err != nil {
		r.Close()
		return fmt.Errorf("--redis: %w", err)
	}
	s.redis, s.bus = r, bus
	s.log.Info("sharing with the other nodes over Redis", "redis", r.Addr(), "node", r.NodeID())
	return nil
}

// sharing is what the use cases share with the other nodes over Redis: nothing for one node (an
// interface holding a nil *cluster.EventBus would not be nil).
func (s *Server) sharing() sharing {
	if s.bus == nil {
		return sharing{}
	}
	return sharing{bus: s.bus, patientLock: s.redis.PatientLock}
}

// receiveEvents hands the other nodes' monitoring events to this node's subscribers until ctx ends.
func (s *Server) receiveEvents(ctx context.Context) {
	s.eventsDone = make(chan struct{})
	go func() {
		defer close(s.eventsDone)
		if err := s.services.Monitoring.ReceiveEvents(ctx); err != nil {
			s.log.Error("the other nodes' monitoring events are no longer received", "err", err)
		}
	}()
}

// closeRedis sends this node's last monitoring events and closes Redis, which ends a read of the
// other nodes' events still waiting there (Close has cancelled it), and waits for that to end.
func (s *Server) closeRedis() error {
	var err error
	if s.redis != nil {
		err = errors.Join(s.bus.Close(), s.redis.Close())
	}
	if s.eventsDone != nil {
		<-s.eventsDone
	}
	return err
}
