package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// UploadResult is what became of one batch the server answered for good.
type UploadResult struct {
	// BatchID is the batch's id.
	BatchID string
	// Status is the HTTP status of the answer: 200, or 400, 409 or 413 for a batch refused whole
	// (0 for a batch file that could not be read, set aside).
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
}

// Rejection is a reading the server refused: it never will accept it as it is.
type Rejection struct {
	Index   int    `json:"index"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// errRetry marks an upload that may succeed later: the server could not be reached, was busy or
// failed. After is the wait the server asked for, if any.
type errRetry struct {
	err   error
	after time.Duration
}

func (e *errRetry) Error() string { return e.err.Error() }
func (e *errRetry) Unwrap() error { return e.err }

// maxRetryAfter bounds a wait the server asks for (Retry-After).
const maxRetryAfter = time.Minute

// uploadLoop sends the queue's batches, oldest first, until ctx ends (nil), the server refuses the
// device (ErrRevoked), or inputDone is closed and the queue is empty (nil).
func (a *Agent) uploadLoop(ctx context.Context, inputDone <-chan struct{}) error {
	b := backoff{max: a.o.RetryMax}
	offline := false
	for ctx.Err() == nil {
		names, err := a.q.batches()
		if err != nil {
			a.log.Error("cannot read the queue", "err", err)
			if b.wait(ctx, 0) != nil {
				return nil
			}
			continue
		}
		if len(names) == 0 {
			select {
			case <-inputDone:
				if a.q.pending() {
					a.log.Warn("readings could not be sealed into a batch; the next run sends them")
				}
				return nil // everything taken is uploaded
			default:
			}
			select {
			case <-a.q.sealed:
			case <-inputDone:
			case <-ctx.Done():
				return nil
			}
			continue
		}
		for _, name := range names {
			for {
				err := a.uploadBatch(ctx, name)
				var retry *errRetry
				if errors.As(err, &retry) {
					if ctx.Err() != nil {
						return nil
					}
					a.online.Store(false)
					if !offline {
						offline = true
						a.log.Warn("cannot upload; readings wait in the queue and are sent when the server answers", "err", err)
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
				if offline {
					offline = false
					left, _ := a.q.batches()
					a.log.Info("the server answers again; sending the queue", "batches", len(left))
				}
				b.reset()
				break
			}
		}
	}
	return nil
}

// uploadBatch sends one batch. It returns nil once the batch is done with (stored, or refused whole
// and removed), an *errRetry when it should be sent again, and ErrRevoked.
func (a *Agent) uploadBatch(ctx context.Context, name string) error {
	id := batchIDOf(name)
	body, err := a.q.read(name)
	if err == nil && !json.Valid(body) {
		err = errors.New("not JSON")
	}
	if err != nil {
		a.log.Error("a queued batch cannot be read; it is set aside (renamed .bad) and the queue goes on", "batch", id, "err", err)
		if err := a.q.setAside(name); err != nil {
			a.log.Error("cannot set the batch aside; removing it", "batch", id, "err", err)
			a.q.remove(name)
		}
		a.dropped.Add(1)
		a.report(UploadResult{BatchID: id, Err: err})
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, a.server+"/api/v1/observations", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("upload batch %s: %w", id, err)
	}
	req.Header.Set("Authorization", "Bearer "+a.creds.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.o.HTTPClient.Do(req)
	if err != nil {
		return &errRetry{err: fmt.Errorf("upload batch %s to %s: %w", id, a.server, err)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return &errRetry{err: fmt.Errorf("upload batch %s: read the answer: %w", id, err)}
	}
	switch s := resp.StatusCode; {
	case s == http.StatusOK:
		var ans struct {
			Accepted  int         `json:"accepted"`
			Duplicate bool        `json:"duplicate"`
			Rejected  []Rejection `json:"rejected"`
			Alerts    []any       `json:"alerts"`
		}
		if err := json.Unmarshal(data, &ans); err != nil {
			// Stored, but the answer is odd (a proxy's page?): sending again is safe, the id dedups.
			return &errRetry{err: fmt.Errorf("upload batch %s: the answer is not an upload result (a proxy in the way?): %w", id, err)}
		}
		if err := a.q.remove(name); err != nil {
			a.log.Error("batch uploaded but cannot be removed from the queue; the server will take it as a duplicate", "batch", id, "err", err)
		}
		a.uploaded.Add(1)
		a.accepted.Add(int64(ans.Accepted))
		a.rejected.Add(int64(len(ans.Rejected)))
		a.logRejections(id, ans.Rejected)
		a.log.Debug("batch uploaded", "batch", id, "accepted", ans.Accepted, "duplicate", ans.Duplicate, "alerts", len(ans.Alerts))
		a.report(UploadResult{BatchID: id, Status: s, Accepted: ans.Accepted, Duplicate: ans.Duplicate, Rejected: ans.Rejected, Alerts: len(ans.Alerts)})
		return nil
	case s == http.StatusUnauthorized:
		return ErrRevoked
	case s == http.StatusBadRequest || s == http.StatusConflict || s == http.StatusRequestEntityTooLarge:
		// It can never succeed as it is; keeping it would hold up every batch after it.
		e := apiErrorOf(s, data)
		a.log.Error("the server refused a whole batch; it is removed from the queue and its readings are not stored",
			"batch", id, "status", s, "code", e.Code, "message", e.Message)
		if err := a.q.remove(name); err != nil {
			a.log.Error("cannot remove the refused batch", "batch", id, "err", err)
		}
		a.dropped.Add(1)
		a.report(UploadResult{BatchID: id, Status: s, Err: e})
		return nil
	default:
		// 5xx, 429, and anything unexpected (a 404 from an older server or a proxy): later.
		return &errRetry{err: fmt.Errorf("upload batch %s: %w", id, apiErrorOf(s, data)), after: retryAfter(resp.Header.Get("Retry-After"))}
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
