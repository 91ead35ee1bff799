package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/telemed/telemed/client"
	"github.com/telemed/telemed/internal/agent/deviceapi"
)

// deviceInfo is the answer of GET /api/v1/device.
type deviceInfo struct {
	Device struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"device"`
	Consultation *struct {
		ID    string `json:"id"`
		Title string `json:"title"`
		Link  string `json:"link"`
	} `json:"consultation"`
}

// live is the consultation the agent is in.
type live struct {
	id      string
	s       *client.Session
	gone    chan struct{} // closed when the session has closed by itself
	stopped chan struct{} // closed to stop watching the session
}

// joinTimeout bounds joining a consultation, admission included.
const joinTimeout = 20 * time.Second

// liveLoop asks the server every PollInterval whether a consultation of the patient is under way,
// joins it, and leaves when it is over. It returns nil when ctx ends and ErrRevoked when the server
// refuses the device.
func (a *Agent) liveLoop(ctx context.Context) error {
	tick := time.NewTicker(a.o.PollInterval)
	defer tick.Stop()
	var cur *live
	defer func() { a.leave(cur, "the agent is stopping") }()
	lastErr := ""
	for {
		info, err := a.poll(ctx)
		switch {
		case errors.Is(err, ErrRevoked):
			return err
		case err != nil:
			if ctx.Err() != nil {
				return nil
			}
			a.log.Debug("live: cannot ask the server for a consultation", "err", err)
		case info.Consultation == nil:
			if cur != nil {
				a.leave(cur, "nobody is in the consultation any more, or it ended")
				cur = nil
			}
		case cur != nil && cur.id != info.Consultation.ID:
			a.leave(cur, "another consultation of the patient is under way")
			cur = nil
			fallthrough
		case cur == nil:
			c := info.Consultation
			l, err := a.join(ctx, c.ID, c.Link)
			if err != nil {
				if msg := err.Error(); msg != lastErr {
					lastErr = msg
					a.log.Warn("live: cannot join the consultation; trying again", "consultation", c.ID, "err", err)
				}
				break
			}
			lastErr = ""
			cur = l
			a.log.Info("joined a consultation: streaming readings live", "consultation", c.ID, "title", c.Title)
		}
		var gone chan struct{}
		if cur != nil {
			gone = cur.gone
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-gone:
			a.leave(cur, "the call ended or the connection failed")
			cur = nil
		}
	}
}

// poll asks the server whether a consultation of the device's patient is under way.
func (a *Agent) poll(ctx context.Context) (deviceInfo, error) {
	var info deviceInfo
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, a.server+"/api/v1/device", nil)
	if err != nil {
		return info, fmt.Errorf("ask for a consultation: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+a.creds.Token)
	resp, err := a.o.HTTPClient.Do(req)
	if err != nil {
		return info, fmt.Errorf("ask for a consultation: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return info, fmt.Errorf("ask for a consultation: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		e := deviceapi.ReadError(resp, data)
		if e.Status == http.StatusUnauthorized && e.Telemed {
			return info, ErrRevoked // only telemed's own 401: a proxy's says nothing of the device
		}
		return info, fmt.Errorf("ask for a consultation: %w", e)
	}
	if err := json.Unmarshal(data, &info); err != nil {
		return info, fmt.Errorf("ask for a consultation: the answer is not JSON of a device: %w", err)
	}
	if c := info.Consultation; c != nil && (c.ID == "" || c.Link == "") {
		return info, errors.New("ask for a consultation: the answer has a consultation without id or link")
	}
	return info, nil
}

// join joins a consultation as the device and waits to be admitted (devices are, at once).
func (a *Agent) join(ctx context.Context, id, link string) (*live, error) {
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	// The signaling connection lasts as long as the call: a client time limit would cut it.
	hc := *a.o.HTTPClient
	hc.Timeout = 0
	s, err := client.Join(ctx, client.Config{
		Link:       link,
		Name:       a.o.Name,
		SendVitals: true,
		HTTPClient: &hc,
		Logger:     a.log.With("consultation", id),
	})
	if err != nil {
		return nil, err
	}
	if err := s.WaitAdmitted(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("wait to be admitted: %w", err)
	}
	l := &live{id: id, s: s, gone: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		// Read the events (the session drops what is not read, with a warning) and notice the end.
		for {
			select {
			case ev := <-s.Events():
				switch ev.Type {
				case client.EventPeerConnected:
					a.log.Debug("live: connected to a participant", "consultation", id, "peer", ev.Peer.Name)
				case client.EventClosed:
					close(l.gone)
					return
				}
			case <-l.stopped:
				return
			}
		}
	}()
	a.mu.Lock()
	a.session, a.liveID = s, id
	a.mu.Unlock()
	return l, nil
}

// leave leaves the consultation, if the agent is in one.
func (a *Agent) leave(l *live, why string) {
	if l == nil {
		return
	}
	a.mu.Lock()
	if a.session == l.s {
		a.session, a.liveID = nil, ""
	}
	a.mu.Unlock()
	close(l.stopped)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l.s.Leave(ctx)
	a.log.Info("left the consultation", "consultation", l.id, "why", why)
}
