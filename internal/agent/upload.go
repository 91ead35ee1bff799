package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/agent/deviceapi"
	"github.com/telemed/telemed/internal/agent/queue"
)

// UploadResult is what became of one batch the server answered for good.
type UploadResult struct {
	// BatchID is the batch's id.
	BatchID string
	// Status is the HTTP status of the answer: 200, or 400, 409 or 413 for a batch telemed refused
	// whole (0 for a batch file that could not be read, set aside).
	Status int
	// Accepted is how many of its readings the server stored.
	Accepted int
	// Duplicate is set when the server had stored this batch before (an answer lost, a restart).
	Duplicate bool
	// Rejected are the readings the server refused, by index in the batch.
	Rejected []Rejection
	// Alerts is how many alerts its readings raised.
	Alerts int
	// Err says why a batch was refused whole.
	Err error
	// SetAside is where the file of a batch refused whole (or damaged) was moved: DIR/rejected/...
	SetAside string
}

// Rejection is a reading the server refused: it never will accept it as it is.
type Rejection struct {
	Index   int          `json:"index"`
	Code    errcode.Code `json:"code"`
	Message string       `json:"message"`
}

// errRetry marks an upload that may succeed later: the server could not be reached, was busy or
// failed, or something in front of it answered. After is the wait the server asked for, if any.
type errRetry struct {
	err   error
	after time.Duration
	// kind names the trouble, so that it is logged once however many times it comes in a row; why
	// tells the operator what to check.
	kind, why string
}

func (e *errRetry) Error() string { return e.err.Error() }
func (e *errRetry) Unwrap() error { return e.err }

// maxRetryAfter bounds a wait the server asks for (Retry-After).
const maxRetryAfter = time.Minute

// RejectedDir is the folder, in the agent's, where batches the server refused for good are kept.
const RejectedDir = "rejected"

// refusedForGood are the codes of telemed's answers that refuse a batch whole, for what it is: it
// can never be stored as it is (docs/monitoring.md).
var refusedForGood = map[errcode.Code]bool{errcode.BadJSON: true, errcode.BadField: true, errcode.Conflict: true, errcode.TooLarge: true}

// uploadLoop sends the queue's batches, oldest first, until ctx ends (nil), the server refuses the
// device (ErrRevoked), or inputDone is closed and the queue is empty (nil).
func (a *Agent) uploadLoop(ctx context.Context, inputDone <-chan struct{}) error {
	b := backoff{max: a.o.RetryMax}
	trouble := "" // the kind of trouble logged in this episode; "" while uploads go through
	for ctx.Err() == nil {
		name, ok := a.q.Oldest()
		if !ok {
			select {
			case <-inputDone:
				if a.q.Pending() {
					a.log.Warn("readings could not be sealed into a batch; the next run sends them")
				}
				return nil // everything taken is uploaded
			default:
			}
			select {
			case <-a.q.Sealed():
			case <-inputDone:
			case <-ctx.Done():
				return nil
			}
			continue
		}
		err := a.uploadBatch(ctx, name)
		var retry *errRetry
		if errors.As(err, &retry) {
			if ctx.Err() != nil {
				return nil
			}
			a.online.Store(false)
			if retry.kind != trouble {
				trouble = retry.kind
				a.log.Warn("cannot upload: "+retry.why+"; the readings wait in the queue, and are sent when the server takes them",
					"batches", a.q.Count(), "err", err)
			}
			if b.wait(ctx, retry.after) != nil {
				return nil
			}
			continue
		}
		if err != nil {
			return err
		}
		a.online.Store(true)
		if trouble != "" {
			trouble = ""
			a.log.Info("the server answers again; sending the queue", "batches", a.q.Count())
		}
		b.reset()
	}
	return nil
}

// uploadBatch sends one batch. It returns nil once the batch is done with (stored, or refused whole
// and moved aside), an *errRetry when it should be sent again, and ErrRevoked.
func (a *Agent) uploadBatch(ctx context.Context, name string) error {
	id := queue.BatchID(name)
	body, err := a.q.Read(name)
	if err == nil && !json.Valid(body) {
		err = errors.New("not JSON")
	}
	if err != nil {
		a.dropped.Add(1)
		to, merr := a.q.MoveTo(name, filepath.Join(a.o.Dir, RejectedDir))
		if merr != nil {
			a.log.Error("a queued batch cannot be read, nor moved aside; the next run tries it again", "batch", id, "err", err, "move", merr)
			a.q.Skip(name)
		} else {
			a.log.Error("a queued batch cannot be read; it is kept in "+filepath.Dir(to)+" and the queue goes on", "batch", id, "err", err, "file", to)
		}
		a.report(UploadResult{BatchID: id, Err: err, SetAside: to})
		return nil
	}
	resp, data, err := a.post(ctx, id, body)
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusOK {
		return a.uploaded200(name, id, resp, data)
	}
	e := deviceapi.ReadError(resp, data)
	switch s := resp.StatusCode; {
	case s == http.StatusUnauthorized && e.Telemed:
		return ErrRevoked
	case s >= 400 && s < 500 && e.Telemed && refusedForGood[e.Code]:
		a.setAside(name, id, s, e)
		return nil
	default:
		kind, why := a.trouble(e, len(body))
		return &errRetry{err: fmt.Errorf("upload batch %s: %w", id, e), after: retryAfter(resp.Header.Get("Retry-After")), kind: kind, why: why}
	}
}

// post sends a batch's body and reads the answer; an error is worth a retry, or a fault of the agent.
func (a *Agent) post(ctx context.Context, id string, body []byte) (*http.Response, []byte, error) {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, a.server+"/api/v1/observations", bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("upload batch %s: %w", id, err)
	}
	req.Header.Set("Authorization", "Bearer "+a.creds.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.o.HTTPClient.Do(req)
	if err != nil {
		return nil, nil, &errRetry{err: fmt.Errorf("upload batch %s to %s: %w", id, a.server, err), kind: "unreachable",
			why: "the server at " + a.server + " cannot be reached: check that it runs, that the address is right and that the network is up"}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, nil, &errRetry{err: fmt.Errorf("upload batch %s: read the answer: %w", id, err), kind: "cut",
			why: "the connection to the server broke while it answered"}
	}
	return resp, data, nil
}

// uploaded200 takes a 200 answer: the batch is done if it is telemed's upload result.
func (a *Agent) uploaded200(name, id string, resp *http.Response, data []byte) error {
	var ans struct {
		Accepted  *int        `json:"accepted"`
		Duplicate bool        `json:"duplicate"`
		Rejected  []Rejection `json:"rejected"`
		Alerts    []any       `json:"alerts"`
	}
	if err := json.Unmarshal(data, &ans); err != nil || ans.Accepted == nil {
		// Stored or not, sending again is safe: the id dedups.
		return &errRetry{err: fmt.Errorf("upload batch %s: the answer is not an upload result: %w", id, deviceapi.ReadError(resp, data)), kind: "odd 200",
			why: "what answers at " + a.server + " is not telemed's upload API: check --server, and for a proxy or captive portal in the way"}
	}
	if err := a.q.Remove(name); err != nil {
		a.log.Error("batch uploaded but cannot be removed from the queue; the next run sends it again and the server takes it as a duplicate", "batch", id, "err", err)
	}
	a.uploaded.Add(1)
	a.accepted.Add(int64(*ans.Accepted))
	a.rejected.Add(int64(len(ans.Rejected)))
	a.logRejections(id, ans.Rejected)
	a.log.Debug("batch uploaded", "batch", id, "accepted", *ans.Accepted, "duplicate", ans.Duplicate, "alerts", len(ans.Alerts))
	a.report(UploadResult{BatchID: id, Status: resp.StatusCode, Accepted: *ans.Accepted, Duplicate: ans.Duplicate, Rejected: ans.Rejected, Alerts: len(ans.Alerts)})
	return nil
}

// setAside keeps a batch that telemed itself refused for good out of the queue: keeping it there
// would hold up every batch after it. It is kept aside, not deleted: a person may look at it, and
// send it again (an older server refusing a newer agent's batch, say) by moving it back.
func (a *Agent) setAside(name, id string, status int, e *deviceapi.APIError) {
	a.dropped.Add(1)
	to, err := a.q.MoveTo(name, filepath.Join(a.o.Dir, RejectedDir))
	if err != nil {
		a.log.Error("the server refused a whole batch, and it cannot be moved aside: it stays in the queue's folder and the next run sends it again",
			"batch", id, "status", status, "code", e.Code, "message", e.Message, "err", err)
		a.q.Skip(name)
	} else {
		a.log.Error("the server refused a whole batch; it is kept in "+filepath.Dir(to)+" and the queue goes on",
			"batch", id, "status", status, "code", e.Code, "message", e.Message, "file", to)
	}
	a.report(UploadResult{BatchID: id, Status: status, Err: e, SetAside: to})
}

// trouble says what an answer that is not the upload's result and does not refuse it for good
// means, for the operator: what to check. It returns a name of the trouble too, the same each time.
func (a *Agent) trouble(e *deviceapi.APIError, size int) (kind, why string) {
	s := e.Status
	kind = strconv.Itoa(s) + " " + string(e.Code)
	switch {
	case !e.Telemed && s == http.StatusRequestEntityTooLarge:
		return kind, fmt.Sprintf("a proxy in front of the server refuses bodies of %d bytes (413, %s): raise its limit (nginx: client_max_body_size; telemed takes up to 8 MiB)",
			size, e.From())
	case !e.Telemed && s == http.StatusUnauthorized:
		return kind, fmt.Sprintf("something in front of the server asks for credentials (401, %s): let the agent's requests to /api/v1/ through to telemed without them", e.From())
	case !e.Telemed && (s == http.StatusBadGateway || s == http.StatusServiceUnavailable || s == http.StatusGatewayTimeout):
		return kind, fmt.Sprintf("a proxy in front of the server cannot reach it (%d %s, %s): check that telemed serve runs and that the proxy points at it",
			s, http.StatusText(s), e.From())
	case !e.Telemed:
		return kind, fmt.Sprintf("what answers at %s is not telemed (%d %s, %s): check the proxy in front of it, or --server", a.server, s, http.StatusText(s), e.From())
	case s == http.StatusTooManyRequests:
		return kind, "the server is busy (" + e.Error() + ")"
	case s >= 500:
		return kind, "the server failed (" + e.Error() + "): its log says why"
	default:
		// A telemed answer the contract does not have for uploads: a server older or newer than the
		// agent (404: one without remote monitoring).
		return kind, fmt.Sprintf("the server answered %d %s (%s), which the agent does not expect: check that it is a telemed server with remote monitoring, as new as the agent",
			s, e.Code, e.Message)
	}
}

func (a *Agent) report(r UploadResult) {
	if a.o.OnUploaded != nil {
		a.o.OnUploaded(r)
	}
}

// logRejections logs the readings the server refused, a few per batch.
func (a *Agent) logRejections(id string, rs []Rejection) {
	const shown = 5
	for i, r := range rs {
		if i == shown {
			a.log.Warn("more readings of the batch were refused", "batch", id, "more", len(rs)-shown)
			break
		}
		a.log.Warn("the server refused a reading; it will not be sent again", "batch", id, "index", r.Index, "code", r.Code, "message", r.Message)
	}
}

// retryAfter reads a Retry-After header in seconds (a date is taken as none).
func retryAfter(v string) time.Duration {
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0
	}
	return min(time.Duration(n)*time.Second, maxRetryAfter)
}
