// Package agent is telemed's device agent (telemed device): it takes readings from its sources
// (simulated devices, a bridge on standard input), queues them on disk, uploads them to the server
// in batches, and streams them live into any consultation of its patient that is under way. It is
// built on the client package and speaks the contract of docs/monitoring.md.
package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/telemed/telemed/client"
	"github.com/telemed/telemed/internal/agent/deviceapi"
	"github.com/telemed/telemed/internal/agent/queue"
	"github.com/telemed/telemed/internal/agent/source"
	"github.com/telemed/telemed/internal/agent/waveform"
	"github.com/telemed/telemed/vitals"
)

// QueueDir is the queue's folder in the agent's folder.
const QueueDir = "queue"

// Waiting counts what an agent folder's queue holds that the server has not answered: its batches,
// and a pending segment as one more. It does not change the queue, so it may be asked while an agent
// runs.
func Waiting(dir string) (int, error) { return queue.Waiting(filepath.Join(dir, QueueDir)) }

// Source is something that measures: a simulated device (source.Sim) or a bridge's output
// (source.LineSource).
type Source = source.Source

// Options configure an Agent. Only Dir is needed, once the device is enrolled there.
type Options struct {
	// Dir is the agent's folder: its credentials (device.json) and its queue (queue/).
	// Default: DefaultDir.
	Dir string
	// ServerURL is the server to talk to. Default: the one the device enrolled with.
	ServerURL string
	// Name is shown to the others in a consultation. Default: the device's name from enrollment.
	Name string
	// Sources measure. With none, or once every source has ended (standard input closed), the agent
	// uploads what its queue holds and Run returns.
	Sources []Source
	// HTTPClient makes the requests and dials the live signaling. Each request has its own time
	// limit, so it needs none. Default: http.DefaultClient.
	HTTPClient *http.Client
	// Logger receives what the agent does. Default: none.
	Logger *slog.Logger
	// FlushInterval is how often the readings taken are sealed into a batch to upload. Default 1 s.
	FlushInterval time.Duration
	// PollInterval is how often the agent asks the server whether a consultation of its patient is
	// under way. Default 3 s.
	PollInterval time.Duration
	// RetryMax caps the wait between attempts to upload when the server cannot be reached or is
	// busy. Default 5 s.
	RetryMax time.Duration
	// NoLive keeps the agent out of consultations: it only uploads. Default false.
	NoLive bool
	// Now is the clock that names batches and checks stdin readings. Default: time.Now.
	Now func() time.Time
	// OnUploaded is told of each batch the server has answered for good (stored, or refused whole
	// and moved to DIR/rejected).
	// It runs on the uploader's goroutine. Default: none.
	OnUploaded func(UploadResult)
}

// Defaults of Options.
const (
	DefaultDir           = "telemed-device"
	DefaultFlushInterval = time.Second
	DefaultPollInterval  = 3 * time.Second
	DefaultRetryMax      = 5 * time.Second
)

// requestTimeout bounds each request to the server.
const requestTimeout = 30 * time.Second

// ErrRevoked is returned by Run when the server no longer accepts the device's token.
var ErrRevoked = errors.New("the server refuses this device's token (401 unauthenticated): the device was revoked, or this server does not know it; ask the provider for a new enrollment code and enroll a new device with it (--enroll)")

// Status is what the agent has done so far.
type Status struct {
	// Taken is the readings the sources gave, a waveform counted in the pieces of about a second it
	// is uploaded in (as Accepted counts it); Lost those that could not be queued (a disk error, or
	// a full buffer as the agent stopped).
	Taken, Lost int64
	// Queued is the batches on disk waiting to be uploaded.
	Queued int
	// Uploaded is the batches the server stored; Accepted and Rejected count their readings.
	Uploaded, Accepted, Rejected int64
	// Dropped is the batches the server refused whole (telemed's 400 bad_json or bad_field, 409
	// conflict, 413 too_large), which were moved out of the queue into DIR/rejected, and the batch
	// files that could not be read, moved there too.
	Dropped int64
	// Online reports whether the last upload reached the server.
	Online bool
	// Live is the consultation the agent streams into, or "".
	Live string
	// Streamed is the readings sent live.
	Streamed int64
}

// Agent is a running device agent.
type Agent struct {
	o      Options
	creds  deviceapi.Credentials
	server string
	log    *slog.Logger
	q      *queue.Queue
	unlock func()

	taken, lost, uploaded, accepted, rejected, dropped, streamed atomic.Int64
	online                                                       atomic.Bool

	mu      sync.Mutex
	session *client.Session
	liveID  string
	running bool
	closed  bool
}

// New loads the device's credentials from o.Dir and opens its queue, sealing what a previous run
// left pending.
func New(o Options) (*Agent, error) {
	if o.Dir == "" {
		o.Dir = DefaultDir
	}
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.RetryMax <= 0 {
		o.RetryMax = DefaultRetryMax
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	creds, err := deviceapi.LoadCredentials(o.Dir)
	if err != nil {
		return nil, err
	}
	server := creds.Server
	if o.ServerURL != "" {
		if server, err = deviceapi.NormalizeServerURL(o.ServerURL); err != nil {
			return nil, err
		}
	}
	if o.Name == "" {
		o.Name = creds.Name
	}
	unlock, err := lockDir(o.Dir)
	if err != nil {
		return nil, err
	}
	q, err := queue.Open(filepath.Join(o.Dir, QueueDir), o.Logger, o.Now)
	if err != nil {
		unlock()
		return nil, err
	}
	return &Agent{o: o, creds: creds, server: server, log: o.Logger, q: q, unlock: unlock}, nil
}

// Credentials returns who the agent is.
func (a *Agent) Credentials() deviceapi.Credentials { return a.creds }

// Status returns what the agent has done so far.
func (a *Agent) Status() Status {
	queued := a.q.Count()
	a.mu.Lock()
	live := a.liveID
	a.mu.Unlock()
	return Status{Taken: a.taken.Load(), Lost: a.lost.Load(), Queued: queued, Uploaded: a.uploaded.Load(),
		Accepted: a.accepted.Load(), Rejected: a.rejected.Load(), Dropped: a.dropped.Load(),
		Online: a.online.Load(), Live: live, Streamed: a.streamed.Load()}
}

// Close releases the agent's folder. Call it after Run has returned.
func (a *Agent) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	err := a.q.Close()
	a.unlock()
	return err
}

// Run takes, queues, uploads and streams readings until ctx ends, which is a graceful stop (the
// readings taken are sealed into the queue for the next run) and returns nil. It returns early with
// ErrRevoked when the server refuses the device's token, and nil once every source has ended and the
// queue is uploaded.
func (a *Agent) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.running || a.closed {
		a.mu.Unlock()
		return errors.New("agent: Run called twice, or after Close")
	}
	a.running = true
	a.mu.Unlock()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	readings := make(chan vitals.Reading, 4096)
	var sources sync.WaitGroup
	for _, src := range a.o.Sources {
		sources.Go(func() {
			// A reading taken is queued even as the agent stops: the dispatcher drains the channel
			// until the sources have ended. Only a full channel and a stop at once lose one.
			emit := func(r vitals.Reading) {
				select {
				case readings <- r:
					return
				default:
				}
				select {
				case readings <- r:
				case <-ctx.Done():
					a.lost.Add(1)
				}
			}
			if err := src.Run(ctx, emit); err != nil && ctx.Err() == nil {
				a.log.Error("source stopped", "source", src.Name(), "err", err)
			}
		})
	}
	// A source blocked reading its input (stdin) is not waited for: it ends with the process.
	go func() { sources.Wait(); close(readings) }()

	inputDone := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { a.dispatch(ctx, readings, inputDone) })
	wg.Go(func() {
		err := a.uploadLoop(ctx, inputDone)
		if err == nil {
			err = context.Canceled // drained: everything else stops too
		}
		cancel(err)
	})
	if !a.o.NoLive {
		wg.Go(func() {
			if err := a.liveLoop(ctx); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// dispatch is the one goroutine that queues readings and streams them live, and seals the queue
// every FlushInterval. It seals what it has when ctx ends, and closes inputDone once no more
// readings can come.
func (a *Agent) dispatch(ctx context.Context, readings <-chan vitals.Reading, inputDone chan<- struct{}) {
	defer close(inputDone)
	j := waveform.NewJoiner(a.enqueue)
	tick := time.NewTicker(a.o.FlushInterval)
	defer tick.Stop()
	seal := func() {
		if err := a.q.Seal(); err != nil {
			a.log.Error("cannot seal the queue's readings into a batch; they stay pending", "err", err)
		}
	}
	for {
		select {
		case r, ok := <-readings:
			if !ok {
				j.FlushAll()
				seal()
				return
			}
			a.take(j, r)
		case <-tick.C:
			j.FlushStale()
			seal()
		case <-ctx.Done():
			// Take what the sources hand over until they have ended, then keep it for the next run.
			// A source blocked reading its input (stdin) is not waited for long.
			grace := time.NewTimer(stopGrace)
			defer grace.Stop()
		drain:
			for {
				select {
				case r, ok := <-readings:
					if !ok {
						break drain
					}
					a.take(j, r)
				case <-grace.C:
					break drain
				}
			}
			j.FlushAll()
			seal()
			return
		}
	}
}

// stopGrace is how long a stopping agent waits for its sources to end, queueing what they still hand
// over.
const stopGrace = 2 * time.Second

// take queues a reading and streams it live. A waveform is queued in pieces of about a second and
// streamed in pieces of 20 ms.
func (a *Agent) take(j *waveform.Joiner, r vitals.Reading) {
	a.sendLive(r)
	if len(r.Samples) > 0 {
		j.Add(r)
		return
	}
	a.enqueue(r)
}

func (a *Agent) enqueue(r vitals.Reading) {
	a.taken.Add(1)
	if err := a.q.Append(r); err != nil {
		if a.lost.Add(1) == 1 || a.lost.Load()%1000 == 0 {
			a.log.Error("cannot queue readings: they are lost (is the disk full?)", "lost", a.lost.Load(), "err", err)
		}
	}
}

// livePiece is the length of a waveform piece streamed live.
const livePiece = 20 * time.Millisecond

// sendLive streams a reading to the consultation the agent is in, if any.
func (a *Agent) sendLive(r vitals.Reading) {
	a.mu.Lock()
	s := a.session
	a.mu.Unlock()
	if s == nil {
		return
	}
	pieces := []vitals.Reading{r}
	if len(r.Samples) > 0 {
		pieces = waveform.Split(r, livePiece)
	}
	for _, p := range pieces {
		if err := s.SendReading(p); err != nil {
			a.log.Debug("live: reading not sent", "code", r.Code, "err", err)
			return
		}
	}
	a.streamed.Add(1)
}

// backoff is the wait before the attempt after one that failed: from 250 ms, doubling, up to max.
type backoff struct {
	next, max time.Duration
}

func (b *backoff) wait(ctx context.Context, atLeast time.Duration) error {
	if b.next == 0 {
		b.next = min(250*time.Millisecond, b.max)
	}
	d := max(b.next, atLeast)
	b.next = min(b.next*2, b.max)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (b *backoff) reset() { b.next = 0 }
