package signal

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/signal/hub"
	"github.com/telemed/telemed/protocol"
)

const (
	closeNormal    = websocket.StatusNormalClosure
	closePolicy    = websocket.StatusPolicyViolation
	closeGoingAway = websocket.StatusGoingAway
	// maxQueued bounds a connection's send queue. It is well above what one peer may burst at
	// another (RateBurst), so no sender can get a receiver disconnected as too slow; the queue grows
	// only as messages wait, so an idle connection holds none of it.
	maxSendQueue = 1024
)

type closeReq struct {
	code   websocket.StatusCode
	reason string
}

// conn is one WebSocket client. Its serve goroutine reads; a writer goroutine beside it owns every
// write, so a slow client never blocks the hub; a keep-alive goroutine pings and drops the silent.
type conn struct {
	srv *Server
	ws  *websocket.Conn

	qmu       sync.Mutex
	queue     [][]byte
	wake      chan struct{} // has a value when the queue may be non-empty
	closeCh   chan closeReq
	closeOnce sync.Once
	done      chan struct{} // closed when the writer has finished

	lastSeen atomic.Int64 // unix nanoseconds of the last frame or pong
	joined   atomic.Bool
	closing  atomic.Bool // the server has begun closing this connection
	pinging  atomic.Bool // a ping is waiting for its pong

	// Owned by the serve goroutine.
	p          *hub.Place
	limiter    *rate.Limiter
	dropped    int
	toldLimits time.Time // when the client was last told it is over the rate limit
	keepAlive  *time.Timer
}

func newConn(s *Server, ws *websocket.Conn) *conn {
	c := &conn{
		srv: s, ws: ws,
		wake:    make(chan struct{}, 1),
		closeCh: make(chan closeReq, 1),
		done:    make(chan struct{}),
		limiter: rate.NewLimiter(s.opts.RateLimit, s.opts.RateBurst),
	}
	c.lastSeen.Store(time.Now().UnixNano())
	return c
}

// Send implements Sender. It never blocks: a client too slow to drain its queue is disconnected.
func (c *conn) Send(msg []byte) bool {
	if c.closing.Load() {
		return false // what it would not write is kept for a resume
	}
	c.qmu.Lock()
	if len(c.queue) >= maxSendQueue {
		c.qmu.Unlock()
		c.close(closePolicy, "too slow to keep up")
		return false
	}
	c.queue = append(c.queue, msg)
	c.qmu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return true
}

// takeQueue returns what is queued and empties the queue.
func (c *conn) takeQueue() [][]byte {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	q := c.queue
	c.queue = nil
	return q
}

// Close implements route.Sender.
func (c *conn) Close(code int, reason string) { c.close(websocket.StatusCode(code), reason) }

// close asks the writer to send what is queued and then close the socket. It never blocks.
func (c *conn) close(code websocket.StatusCode, reason string) {
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		c.closeCh <- closeReq{code, reason}
	})
}

func (c *conn) sendError(e *protocol.Error) {
	c.Send(encode(protocol.ErrorMessage{Type: protocol.TypeError, Code: e.Code, Message: e.Message, RefID: e.RefID}))
}

// fail sends a fatal error and closes the connection.
func (c *conn) fail(e *protocol.Error) {
	c.sendError(e)
	c.close(closePolicy, string(e.Code))
}

func (c *conn) serve(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go c.writeLoop(ctx)
	c.startKeepAlive(ctx)
	var readErr error
	defer func() {
		if c.p != nil {
			// A client that closes its socket in order (a page reload, a closed tab) has left; only
			// a connection lost without a close frame keeps its place for the grace period.
			p, bg := c.p, context.WithoutCancel(ctx)
			if websocket.CloseStatus(readErr) != -1 && !c.closing.Load() {
				c.srv.hub.Hangup(bg, p)
			} else {
				c.srv.hub.Disconnected(bg, p, c)
			}
		}
		c.srv.hub.Gone(c)
		c.close(closeNormal, "")
		<-c.done
		c.keepAlive.Stop()
	}()
	for {
		typ, r, err := c.ws.Reader(ctx)
		if err != nil {
			readErr = err
			return
		}
		data, err := io.ReadAll(io.LimitReader(r, protocol.MaxMessageSize+1))
		if err != nil {
			return
		}
		if len(data) > protocol.MaxMessageSize {
			// Drain the rest; past MaxFrameSize the read limit closes the socket with 1009.
			if _, err := io.Copy(io.Discard, r); err != nil {
				return
			}
		}
		c.lastSeen.Store(time.Now().UnixNano())
		if !c.handle(ctx, typ, data) {
			return
		}
	}
}

// handle processes one message and reports whether to keep reading.
func (c *conn) handle(ctx context.Context, typ websocket.MessageType, data []byte) bool {
	if !c.limiter.Allow() {
		c.dropped++
		if c.dropped >= c.srv.opts.MaxDropped {
			c.srv.opts.Logger.Warn("client disconnected for flooding", "dropped", c.dropped)
			c.fail(&protocol.Error{Code: errcode.RateLimited, Message: "Too many messages; disconnected."})
			return false
		}
		// Tell the client once a second, not once a message: answering every dropped message would
		// itself flood the client being throttled.
		if now := time.Now(); now.Sub(c.toldLimits) >= time.Second {
			c.toldLimits = now
			c.sendError(&protocol.Error{Code: errcode.RateLimited, Message: "Too many messages; some were dropped. Slow down."})
		}
		return true
	}
	if typ != websocket.MessageText {
		c.sendError(&protocol.Error{Code: errcode.BadJSON, Message: "Messages must be JSON text frames."})
		return true
	}
	m, perr := protocol.Decode(data)
	if perr != nil {
		c.srv.m.received("invalid")
		if c.p == nil && m.Type == protocol.TypeJoin {
			c.fail(perr)
			return false
		}
		c.sendError(perr)
		return true
	}
	c.srv.m.received(m.Type)
	if m.Type == protocol.TypePing {
		c.Send(encode(protocol.Envelope{Type: protocol.TypePong}))
		return true
	}
	if c.p == nil {
		if m.Type != protocol.TypeJoin {
			c.sendError(&protocol.Error{Code: errcode.NotJoined, Message: "Send join first.", RefID: m.ID})
			return true
		}
		p, err := c.srv.hub.Join(ctx, c, m)
		if err != nil {
			err.RefID = m.ID
			c.fail(err)
			return false
		}
		c.p = p
		c.joined.Store(true)
		return true
	}
	var err *protocol.Error
	switch m.Type {
	case protocol.TypeJoin:
		err = &protocol.Error{Code: errcode.AlreadyJoined, Message: "Already joined."}
	case protocol.TypeAdmit:
		err = c.srv.hub.Admit(ctx, c.p, m.Peer)
	case protocol.TypeDecline:
		err = c.srv.hub.Decline(ctx, c.p, m.Peer)
	case protocol.TypeRemove:
		err = c.srv.hub.Remove(ctx, c.p, m.Peer)
	case protocol.TypeMedia:
		err = c.srv.hub.Media(ctx, c.p, consult.Media{Audio: *m.Audio, Video: *m.Video, Screen: *m.Screen})
	case protocol.TypeAllowShare:
		err = c.srv.hub.AllowShare(ctx, c.p, m.Peer, *m.Allowed)
	case protocol.TypeOffer, protocol.TypeAnswer, protocol.TypeCandidate:
		err = c.srv.hub.Relay(ctx, c.p, m)
	case protocol.TypeLeave:
		c.srv.hub.Leave(ctx, c.p, protocol.ReasonLeft)
		c.p = nil
		c.close(closeNormal, "left")
		return false
	}
	if err != nil {
		err.RefID = m.ID
		c.sendError(err)
	}
	return true
}

func (c *conn) writeLoop(ctx context.Context) {
	defer close(c.done)
	write := func(msg []byte) error {
		wctx, cancel := context.WithTimeout(ctx, c.srv.opts.WriteTimeout)
		defer cancel()
		return c.ws.Write(wctx, websocket.MessageText, msg)
	}
	for {
		select {
		case <-c.wake:
			for _, msg := range c.takeQueue() {
				if err := write(msg); err != nil {
					c.ws.CloseNow()
					return
				}
			}
		case req := <-c.closeCh:
			for _, msg := range c.takeQueue() {
				if write(msg) != nil {
					break
				}
			}
			c.ws.Close(req.code, req.reason)
			return
		case <-ctx.Done():
			c.ws.Close(closeGoingAway, "server shutting down")
			return
		}
	}
}

// startKeepAlive checks the connection on a timer rather than from a goroutine of its own: an idle
// connection then costs no goroutine stack for it, and the check runs only every few seconds.
func (c *conn) startKeepAlive(ctx context.Context) {
	o := &c.srv.opts
	start := time.Now()
	every := min(o.PingInterval, o.JoinTimeout) / 3
	// Created stopped and armed once stored, so the callback always sees c.keepAlive set.
	c.keepAlive = time.AfterFunc(time.Hour, func() {
		if c.keepAliveCheck(ctx, start) {
			c.keepAlive.Reset(every)
		}
	})
	c.keepAlive.Reset(every)
}

// keepAliveCheck pings an idle connection and drops a silent one. It reports whether to check again.
func (c *conn) keepAliveCheck(ctx context.Context, start time.Time) bool {
	o := &c.srv.opts
	select {
	case <-c.done:
		return false
	case <-ctx.Done():
		return false
	default:
	}
	now := time.Now()
	if !c.joined.Load() && now.Sub(start) > o.JoinTimeout {
		c.fail(&protocol.Error{Code: errcode.NotJoined, Message: "No join received in time."})
		return false
	}
	idle := now.Sub(time.Unix(0, c.lastSeen.Load()))
	if idle > o.IdleTimeout {
		c.close(closeGoingAway, "idle")
		return false
	}
	if idle > o.PingInterval && c.pinging.CompareAndSwap(false, true) {
		// Waiting for the pong must not hold up the next check: silence is judged by lastSeen alone.
		go func() {
			defer c.pinging.Store(false)
			pctx, cancel := context.WithTimeout(ctx, o.IdleTimeout)
			defer cancel()
			if c.ws.Ping(pctx) == nil {
				c.lastSeen.Store(time.Now().UnixNano())
			}
		}()
	}
	return true
}
