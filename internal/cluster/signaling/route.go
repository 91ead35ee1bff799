package signaling

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/telemed/telemed/internal/signal/route"
)

// Router is the route.Router that nodes share in Redis. A participant's messages are numbered by a
// counter and kept in a stream of its own (the replay window a resume reads, on any node); the node
// that holds the participant's connection, named by a key, gets each message in its inbox, a stream
// it reads in order. Streams rather than pub/sub: a node whose Redis connection blips reads on from
// where it was, and a participant that moved reads its own stream, so nothing numbered is lost.
type Router struct {
	rdb    redis.UniversalClient
	prefix string
	node   string
	log    *slog.Logger
	serial uint64

	mu      sync.Mutex
	conns   map[string]*attached // by participant id: connections on this node
	stopped bool

	sent, failed, fromHere, fromOthers prometheus.Counter

	cancel context.CancelFunc
}

type attached struct {
	s    route.Sender
	at   string // this connection's name in the participant's location key
	last uint64 // the highest seq given to s
}

var _ route.Router = (*Router)(nil)

// Keep bounds: the replay window of each participant (as route.Local's), how many entries an
// inbox keeps for a slow reader, and how long a participant's keys outlive its last message.
const (
	keptPerParticipant = 128
	inboxLength        = 100000
	participantTTL     = time.Hour
)

// NewRouter returns the Router of node, over rdb with keys under prefix, and starts reading the
// node's inbox. Stop stops it.
func NewRouter(rdb redis.UniversalClient, prefix, node string, log *slog.Logger) *Router {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Router{rdb: rdb, prefix: prefix, node: node, log: log, conns: make(map[string]*attached),
		cancel: cancel}
	counter := func(name, help string, labels prometheus.Labels) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels})
	}
	r.sent = counter("telemed_cluster_messages_sent_total", "Signaling messages this node put in Redis for participants (on any node).", nil)
	r.failed = counter("telemed_cluster_messages_failed_total", "Signaling messages this node could not put in Redis.", nil)
	const received = "Signaling messages delivered to this node's connections through Redis, by the node that sent them."
	r.fromHere = counter("telemed_cluster_messages_received_total", received, prometheus.Labels{"from": "this_node"})
	r.fromOthers = counter("telemed_cluster_messages_received_total", received, prometheus.Labels{"from": "other_node"})
	go r.read(ctx)
	go r.renew(ctx)
	return r
}

// renewEvery is how often a node renews the keys of the participants connected to it: well within
// participantTTL, so that a participant who hears nothing for an hour (a patient waiting long) keeps
// its location and its numbering.
const renewEvery = 10 * time.Minute

// renew keeps the keys of this node's participants from expiring while they are connected; those
// of a node that is gone expire by themselves.
func (r *Router) renew(ctx context.Context) {
	t := time.NewTicker(renewEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.renewNow(ctx)
		}
	}
}

func (r *Router) renewNow(ctx context.Context) {
	r.mu.Lock()
	ids := make([]string, 0, len(r.conns))
	for id := range r.conns {
		ids = append(ids, id)
	}
	r.mu.Unlock()
	pipe := r.rdb.Pipeline()
	for _, id := range ids {
		for _, k := range r.keys(id) {
			pipe.PExpire(ctx, k, participantTTL)
		}
	}
	if len(ids) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			r.log.Warn("renew: redis", "participants", len(ids), "err", err)
		}
	}
}

// Register adds the router's counters to reg: messages sent, and received from this node and from
// the others (the cross-node traffic).
func (r *Router) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{r.sent, r.failed, r.fromHere, r.fromOthers} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("cluster metrics: %w", err)
		}
	}
	return nil
}

// Stop stops reading the inbox: nothing is delivered after it returns. (Close, in route.Router,
// closes a participant's connection.) A read blocked in Redis ends on its own within its block time;
// Stop does not wait for it, so that a node stops at once.
func (r *Router) Stop() error {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
	r.cancel()
	return nil
}

func (r *Router) keys(id string) []string {
	p := r.prefix + "p:" + id
	return []string{p + ":seq", p + ":log", p + ":at"}
}

func (r *Router) inbox(node string) string { return r.prefix + "inbox:" + node }

// send numbers a message, keeps it, and puts it in the inbox of the node holding the participant's
// connection, in one step, so that a participant moving between nodes cannot miss it: whoever
// sets the location before the step gets it in its inbox, whoever sets it after reads it from the
// kept stream.
var send = redis.NewScript(`
local seq = redis.call('INCR', KEYS[1])
local body = ARGV[1]
local m = '{"seq":' .. seq
if string.len(body) > 1 then m = m .. ',' end
m = m .. body
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 's', seq, 'm', m)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
local at = redis.call('GET', KEYS[3])
if at then
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
  local node = string.match(at, '^(%S+)')
  local inbox = ARGV[2] .. 'inbox:' .. node
  redis.call('XADD', inbox, 'MAXLEN', '~', ARGV[6], '*', 'p', ARGV[3], 'c', at, 's', seq, 'm', m, 'n', ARGV[7])
  redis.call('PEXPIRE', inbox, ARGV[5])
end
return seq`)

// control puts an instruction for the participant's connection (close it, forget it) in the inbox
// of the node holding it, behind the messages before it; forget also deletes the participant's keys.
var control = redis.NewScript(`
local at = redis.call('GET', KEYS[3])
if at then
  local node = string.match(at, '^(%S+)')
  redis.call('XADD', ARGV[1] .. 'inbox:' .. node, 'MAXLEN', '~', ARGV[6], '*', 'p', ARGV[2], 'c', at, 'x', ARGV[3], 'code', ARGV[4], 'r', ARGV[5])
end
if ARGV[3] == 'forget' then redis.call('DEL', KEYS[1], KEYS[2], KEYS[3]) end
return at`)

// detach deletes the location only if it still names this connection.
var detach = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

func (r *Router) bg() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 5*time.Second)
}

// Attach implements route.Router.
func (r *Router) Attach(id string, s route.Sender, first []byte, after uint64) error {
	ctx, cancel := r.bg()
	defer cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.serial++
	at := r.node + " " + strconv.FormatUint(r.serial, 10)
	k := r.keys(id)
	prev, err := r.rdb.SetArgs(ctx, k[2], at, redis.SetArgs{Get: true, TTL: participantTTL}).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("attach %s: %w", id, err)
	}
	if old := r.conns[id]; old != nil && old.s != s {
		old.s.Close(route.ClosePolicy, route.ReasonReplaced)
	}
	if node, _, _ := strings.Cut(prev, " "); prev != "" && node != r.node {
		// The connection that held the place is on another node: that node closes it.
		r.rdb.XAdd(ctx, &redis.XAddArgs{Stream: r.inbox(node), MaxLen: inboxLength, Approx: true,
			Values: []any{"p", id, "c", prev, "x", "close", "code", route.ClosePolicy, "r", route.ReasonReplaced}})
	}
	a := &attached{s: s, at: at, last: after}
	r.conns[id] = a
	s.Send(first)
	kept, err := r.rdb.XRange(ctx, k[1], "-", "+").Result()
	if err != nil {
		return fmt.Errorf("attach %s: replay: %w", id, err)
	}
	for _, e := range kept {
		r.deliverLocked(a, e.Values)
	}
	return nil
}

// deliverLocked gives a numbered message to a, unless it had it already.
func (r *Router) deliverLocked(a *attached, v map[string]any) {
	seq, err := strconv.ParseUint(fmt.Sprint(v["s"]), 10, 64)
	if err != nil || seq <= a.last {
		return
	}
	m, _ := v["m"].(string)
	a.last = seq
	a.s.Send([]byte(m))
}

// Detach implements route.Router.
func (r *Router) Detach(id string, s route.Sender) {
	r.mu.Lock()
	a := r.conns[id]
	if a == nil || a.s != s {
		r.mu.Unlock()
		return
	}
	delete(r.conns, id)
	r.mu.Unlock()
	ctx, cancel := r.bg()
	defer cancel()
	if err := detach.Run(ctx, r.rdb, []string{r.keys(id)[2]}, a.at).Err(); err != nil {
		r.log.Warn("detach: redis", "participant", id, "err", err)
	}
}

// Send implements route.Router.
func (r *Router) Send(id string, msg []byte) {
	ctx, cancel := r.bg()
	defer cancel()
	r.sent1(id, send.Run(ctx, r.rdb, r.keys(id), r.sendArgs(id, msg)...).Err())
}

var _ route.Batcher = (*Router)(nil)

// SendAll implements route.Batcher: the messages go in one pipeline, in order.
func (r *Router) SendAll(msgs []route.Message) {
	if len(msgs) == 1 {
		r.Send(msgs[0].To, msgs[0].Msg)
		return
	}
	ctx, cancel := r.bg()
	defer cancel()
	pipe := r.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(msgs))
	for i, m := range msgs {
		cmds[i] = send.EvalSha(ctx, pipe, r.keys(m.To), r.sendArgs(m.To, m.Msg)...)
	}
	pipe.Exec(ctx)
	for i, c := range cmds {
		err := c.Err()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			// Redis forgot the script (it restarted): this one loads it again.
			err = send.Run(ctx, r.rdb, r.keys(msgs[i].To), r.sendArgs(msgs[i].To, msgs[i].Msg)...).Err()
		}
		r.sent1(msgs[i].To, err)
	}
}

func (r *Router) sendArgs(id string, msg []byte) []any {
	return []any{string(msg[1:]), r.prefix, id, keptPerParticipant, participantTTL.Milliseconds(), inboxLength, r.node}
}

// sent1 counts one message sent, or logs why it was not.
func (r *Router) sent1(id string, err error) {
	if err != nil {
		r.failed.Inc()
		r.log.Warn("send: redis", "participant", id, "err", err)
		return
	}
	r.sent.Inc()
}

// Close implements route.Router.
func (r *Router) Close(id string, code int, reason string) { r.control(id, "close", code, reason) }

// Forget implements route.Router.
func (r *Router) Forget(id string) { r.control(id, "forget", 0, "") }

func (r *Router) control(id, what string, code int, reason string) {
	ctx, cancel := r.bg()
	defer cancel()
	err := control.Run(ctx, r.rdb, r.keys(id), r.prefix, id, what, code, reason, inboxLength).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		r.log.Warn(what+": redis", "participant", id, "err", err)
	}
}

// read delivers the node's inbox to its connections, in order, until ctx ends.
func (r *Router) read(ctx context.Context) {
	last := "0"
	failing := false
	for ctx.Err() == nil {
		res, err := r.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{r.inbox(r.node), last}, Count: 256, Block: time.Second}).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			if ctx.Err() == nil && !failing {
				r.log.Warn("inbox: redis does not answer; retrying", "err", err)
			}
			failing = true
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		if failing {
			failing = false
			last = r.resumeFrom(ctx, last)
			r.log.Info("inbox: redis answers again")
		}
		for _, s := range res {
			for _, e := range s.Messages {
				last = e.ID
				r.handle(e.Values)
			}
		}
	}
}

// resumeFrom is where to read the inbox from after an outage: where it was, unless Redis came back
// without the stream (restarted empty), whose new entries are numbered from the start again.
func (r *Router) resumeFrom(ctx context.Context, last string) string {
	newest, err := r.rdb.XRevRangeN(ctx, r.inbox(r.node), "+", "-", 1).Result()
	if err == nil && (len(newest) == 0 || streamIDLess(newest[0].ID, last)) {
		return "0"
	}
	return last
}

func streamIDLess(a, b string) bool {
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	ami, _ := strconv.ParseUint(am, 10, 64)
	bmi, _ := strconv.ParseUint(bm, 10, 64)
	if ami != bmi {
		return ami < bmi
	}
	asi, _ := strconv.ParseUint(as, 10, 64)
	bsi, _ := strconv.ParseUint(bs, 10, 64)
	return asi < bsi
}

func (r *Router) handle(v map[string]any) {
	id, _ := v["p"].(string)
	at, _ := v["c"].(string)
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.conns[id]
	if a == nil || r.stopped {
		r.log.Debug("inbox entry for no connection", "participant", id, "at", at, "x", v["x"], "s", v["s"])
		return // gone from this node; a resume elsewhere reads the kept stream
	}
	switch v["x"] {
	case nil:
		if v["n"] == r.node {
			r.fromHere.Inc()
		} else {
			r.fromOthers.Inc()
		}
		r.deliverLocked(a, v)
	case "close":
		if a.at == at {
			code, _ := strconv.Atoi(fmt.Sprint(v["code"]))
			reason, _ := v["r"].(string)
			a.s.Close(code, reason)
			delete(r.conns, id)
		}
	case "forget":
		if a.at == at {
			delete(r.conns, id)
		}
	}
}
