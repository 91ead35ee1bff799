package cluster

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// latencyHook times each Redis command, as go-redis runs it, into a histogram by command name.
// Commands that block by design (XREAD BLOCK) are left out: they measure how long nothing happened,
// not how fast Redis is.
type latencyHook struct {
	seconds *prometheus.HistogramVec
}

func newLatencyHook(reg prometheus.Registerer) (latencyHook, error) {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "telemed_redis_command_duration_seconds",
		Help: "Time from sending a Redis command (or a pipeline of them, command=\"pipeline\") to its answer, blocking reads left out.",
		// 100µs to about 3s: a Redis nearby answers in well under a millisecond.
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	}, []string{"command"})
	if err := reg.Register(h); err != nil {
		return latencyHook{}, fmt.Errorf("register redis metrics: %w", err)
	}
	return latencyHook{seconds: h}, nil
}

// DialHook leaves dialing as it is: a connection is timed by its commands.
func (h latencyHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

// ProcessHook times one command.
func (h latencyHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if blocking(cmd) {
			return next(ctx, cmd)
		}
		start := time.Now()
		err := next(ctx, cmd)
		h.seconds.WithLabelValues(cmd.Name()).Observe(time.Since(start).Seconds())
		return err
	}
}

// ProcessPipelineHook times a pipeline as one round trip.
func (h latencyHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		h.seconds.WithLabelValues("pipeline").Observe(time.Since(start).Seconds())
		return err
	}
}

// blocking reports whether cmd may wait on purpose for data (a BLOCK argument).
func blocking(cmd redis.Cmder) bool {
	for _, a := range cmd.Args() {
		if s, ok := a.(string); ok && strings.EqualFold(s, "block") {
			return true
		}
	}
	return false
}
