package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/telemed/telemed/internal/monitoring"
)

// Monitoring events travel in one Redis stream that every node appends to (XADD, trimmed with
// MAXLEN ~) and every node reads from where it left off (XREAD BLOCK with the last id it saw). A
// node whose connection drops for a moment reads on from that id when it is back, so it misses
// nothing the stream still holds; pub/sub would lose whatever was published meanwhile.

// Defaults of EventsOptions.
const (
	DefaultEventsMaxLen = 100_000
	DefaultEventsQueue  = 10_000
	DefaultEventsBlock  = time.Second
)

const (
	// eventsBatch is how many events one pipeline adds, or one XREAD returns, at most.
	eventsBatch = 500
	// retryMin and retryMax bound the wait between attempts while Redis does not answer.
	retryMin = 50 * time.Millisecond
	retryMax = 2 * time.Second
	// sendTimeout bounds one attempt to add a batch; closeTimeout, the last one at Close.
	sendTimeout  = 5 * time.Second
	closeTimeout = 2 * time.Second
)

// EventsOptions configure an EventBus. Every field has a default.
type EventsOptions struct {
	// MaxLen is about how many events the stream keeps (XADD MAXLEN ~), so how far behind a node may
	// fall, or how long it may be cut off from Redis, and still receive every event. An event is a
	// few hundred bytes. Default DefaultEventsMaxLen.
	MaxLen int64
	// Queue is how many events this node holds while Redis does not answer, beyond which it drops
	// new ones (they stay in the patients' records; the other nodes' pages miss them live).
	// Default DefaultEventsQueue.
	Queue int
	// Block is how long one XREAD waits for new events, so about how long Receive takes to notice
	// that its context ended. Default DefaultEventsBlock.
	Block time.Duration
}

// EventBus carries monitoring events between the nodes over a Redis stream: a monitoring.Bus.
type EventBus struct {
	r      *Redis
	stream string
	maxLen int64
	block  time.Duration

	queue   chan monitoring.MonitorEvent
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	dropped atomic.Int64
	seq     uint64 // of the last event sent; the sender's own
	counted *prometheus.CounterVec

	last string // id of the last stream entry read; Receive's own
}

var _ monitoring.Bus = (*EventBus)(nil)

// wireEvent is a monitoring event as it travels in the stream.
type wireEvent struct {
	Type        string                      `json:"type"`
	PatientID   string                      `json:"patient_id"`
	Alert       *monitoring.AlertView       `json:"alert,omitempty"`
	Observation *monitoring.ObservationView `json:"observation,omitempty"`
}

// NewEventBus returns the bus of r's nodes. It receives every event published after it returns, so
// it reads where the stream ends now. Close it before r.
func NewEventBus(ctx context.Context, r *Redis, o EventsOptions) (*EventBus, error) {
	if o.MaxLen <= 0 {
		o.MaxLen = DefaultEventsMaxLen
	}
	if o.Queue <= 0 {
		o.Queue = DefaultEventsQueue
	}
	if o.Block <= 0 {
		o.Block = DefaultEventsBlock
	}
	b := &EventBus{r: r, stream: r.Key("monitoring", "events"), maxLen: o.MaxLen, block: o.Block,
		queue: make(chan monitoring.MonitorEvent, o.Queue), stop: make(chan struct{}), done: make(chan struct{}),
		counted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "telemed_cluster_events_total",
			Help: "Monitoring events this node sent to the other nodes, received from them, or dropped because Redis did not answer for too long.",
		}, []string{"direction"})}
	for _, d := range []string{"sent", "received", "dropped"} {
		b.counted.WithLabelValues(d) // shown at 0 before the first
	}
	if r.reg != nil {
		if err := r.reg.Register(b.counted); err != nil {
			return nil, fmt.Errorf("register monitoring event metrics: %w", err)
		}
	}
	tail, err := r.client.XRevRangeN(ctx, b.stream, "+", "-", 1).Result()
	if err != nil {
		return nil, fmt.Errorf("find the end of the monitoring events in redis at %s: %w", r.addr, err)
	}
	b.last = "0-0"
	if len(tail) == 1 {
		b.last = tail[0].ID
	}
	go b.send()
	return b, nil
}

// Publish queues e for the other nodes and returns at once; the queue is sent in order, in batches,
// and kept while Redis does not answer. When the queue is full, e is dropped and logged.
func (b *EventBus) Publish(e monitoring.MonitorEvent) {
	select {
	case b.queue <- e:
	default:
		b.counted.WithLabelValues("dropped").Inc()
		if b.dropped.Add(1) == 1 {
			b.r.log.Warn("monitoring events are being dropped: Redis has not answered for too long; the other nodes' pages miss them live (they are in the patients' records)", "queue", cap(b.queue))
		}
	}
}

// Close sends what is queued, for at most a few seconds, and stops sending. It does not close r.
func (b *EventBus) Close() error {
	b.once.Do(func() { close(b.stop) })
	<-b.done
	return nil
}

// entry is one event ready to add to the stream.
type entry struct {
	seq  uint64
	data []byte
}

// send adds the queued events to the stream, in order, until Close. A batch that Redis did not take
// is tried again, with a growing wait, until it does.
func (b *EventBus) send() {
	defer close(b.done)
	var batch []entry
	delay, failing := retryMin, false
	for {
		if len(batch) == 0 {
			select {
			case e := <-b.queue:
				batch = b.appendEntry(batch, e)
			case <-b.stop:
				b.flush(nil)
				return
			}
		}
		batch = b.drain(batch, eventsBatch)
		ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
		err := b.add(ctx, batch)
		cancel()
		if err == nil {
			if failing {
				b.r.log.Info("monitoring events reach the other nodes again", "dropped", b.dropped.Swap(0))
			}
			batch, delay, failing = batch[:0], retryMin, false
			continue
		}
		if !failing {
			b.r.log.Warn("monitoring events cannot be sent to the other nodes; they are queued until Redis answers", "err", err)
		}
		failing = true
		select {
		case <-time.After(delay):
		case <-b.stop:
			b.flush(batch)
			return
		}
		delay = min(2*delay, retryMax)
	}
}

// flush makes one last attempt to add batch and everything queued, at Close.
func (b *EventBus) flush(batch []entry) {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	for {
		batch = b.drain(batch, eventsBatch)
		if len(batch) == 0 {
			return
		}
		if err := b.add(ctx, batch); err != nil {
			b.r.log.Warn("monitoring events not sent to the other nodes at close", "events", len(batch)+len(b.queue), "err", err)
			return
		}
		batch = batch[:0]
	}
}

// drain appends to batch what is queued, up to n entries in all, without waiting.
func (b *EventBus) drain(batch []entry, n int) []entry {
	for len(batch) < n {
		select {
		case e := <-b.queue:
			batch = b.appendEntry(batch, e)
		default:
			return batch
		}
	}
	return batch
}

func (b *EventBus) appendEntry(batch []entry, e monitoring.MonitorEvent) []entry {
	data, err := json.Marshal(wireEvent{Type: e.Type, PatientID: e.PatientID, Alert: e.Alert, Observation: e.Observation})
	if err != nil {
		b.r.log.Error("encode a monitoring event for the other nodes", "err", err)
		return batch
	}
	b.seq++
	return append(batch, entry{seq: b.seq, data: data})
}

// add appends batch to the stream in one round trip. Each entry names its node and carries the
// node's sequence number, so that a batch tried again after a partial failure is not delivered
// twice.
func (b *EventBus) add(ctx context.Context, batch []entry) error {
	_, err := b.r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, e := range batch {
			p.XAdd(ctx, &redis.XAddArgs{Stream: b.stream, MaxLen: b.maxLen, Approx: true,
				Values: []any{"node", b.r.nodeID, "seq", e.seq, "event", e.data}})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("add %d monitoring events to redis at %s: %w", len(batch), b.r.addr, err)
	}
	b.counted.WithLabelValues("sent").Add(float64(len(batch)))
	return nil
}

// Receive calls deliver with each event another node published, in each node's order, from where
// the stream ended when the bus was made (or where the last Receive stopped), until ctx ends. While
// Redis does not answer, it tries again and then reads on from the last event it saw. One Receive
// at a time.
func (b *EventBus) Receive(ctx context.Context, deliver func(monitoring.MonitorEvent)) error {
	seen := map[string]uint64{} // the last sequence number delivered, by node
	delay, failing := retryMin, false
	for ctx.Err() == nil {
		res, err := b.r.client.XRead(ctx, &redis.XReadArgs{Streams: []string{b.stream, b.last}, Count: eventsBatch, Block: b.block}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			if ctx.Err() != nil {
				break
			}
			if !failing {
				b.r.log.Warn("monitoring events of the other nodes cannot be read; reading on when Redis answers", "err", fmt.Errorf("redis at %s: %w", b.r.addr, err))
			}
			failing = true
			select {
			case <-time.After(delay):
			case <-ctx.Done():
			}
			delay = min(2*delay, retryMax)
			continue
		}
		if failing {
			b.r.log.Info("monitoring events of the other nodes are read again")
		}
		delay, failing = retryMin, false
		for _, s := range res {
			for _, m := range s.Messages {
				b.last = m.ID
				if e, ok := b.decode(m, seen); ok {
					b.counted.WithLabelValues("received").Inc()
					deliver(e)
				}
			}
		}
	}
	return nil
}

// decode returns the event of a stream entry, or false for this node's own events, for one
// delivered already, and for one that cannot be read (logged).
func (b *EventBus) decode(m redis.XMessage, seen map[string]uint64) (monitoring.MonitorEvent, bool) {
	node, _ := m.Values["node"].(string)
	if node == b.r.nodeID {
		return monitoring.MonitorEvent{}, false
	}
	s, _ := m.Values["seq"].(string)
	data, _ := m.Values["event"].(string)
	seq, err := strconv.ParseUint(s, 10, 64)
	var w wireEvent
	if err == nil {
		err = json.Unmarshal([]byte(data), &w)
	}
	if err != nil {
		b.r.log.Error("a monitoring event in redis cannot be read", "id", m.ID, "node", node, "err", err)
		return monitoring.MonitorEvent{}, false
	}
	if seq <= seen[node] {
		return monitoring.MonitorEvent{}, false
	}
	seen[node] = seq
	return monitoring.MonitorEvent{Type: w.Type, PatientID: w.PatientID, Alert: w.Alert, Observation: w.Observation}, true
}
