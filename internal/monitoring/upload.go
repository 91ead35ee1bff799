package monitoring

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/auth"
	"github.com/telemed/telemed/internal/monitor"
	"github.com/telemed/telemed/internal/store"
	"github.com/telemed/telemed/vitals"
)

// RejectionView is a reading of a batch that was refused. Its JSON form is part of the public API.
type RejectionView struct {
	Index   int          `json:"index"`
	Code    errcode.Code `json:"code"`
	Message string       `json:"message"`
}

// AlertView is an alert as the API, the event stream and signaling show it.
type AlertView struct {
	ID            string    `json:"id"`
	PatientID     string    `json:"patient_id"`
	ObservationID string    `json:"observation_id"`
	Code          string    `json:"code"`
	Name          string    `json:"name"`
	Value         float64   `json:"value"`
	Unit          string    `json:"unit"`
	Bound         string    `json:"bound"`
	Limit         float64   `json:"limit"`
	At            time.Time `json:"at"`
	CreatedAt     time.Time `json:"created_at"`
}

func alertView(a monitor.Alert) AlertView {
	name := a.Code
	if sig, ok := vitals.Lookup(a.Code); ok {
		name = sig.Name
	}
	return AlertView{ID: a.ID, PatientID: a.PatientID, ObservationID: a.ObservationID, Code: a.Code, Name: name, Value: a.Value,
		Unit: a.Unit, Bound: a.Bound, Limit: a.Limit, At: a.At, CreatedAt: a.CreatedAt}
}

// UploadResult is the answer to a batch upload. Its JSON form is part of the public API.
type UploadResult struct {
	BatchID   string          `json:"batch_id"`
	Accepted  int             `json:"accepted"`
	Duplicate bool            `json:"duplicate"`
	Rejected  []RejectionView `json:"rejected"`
	Alerts    []AlertView     `json:"alerts"`
}

var batchIDPattern = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,100}$`)

// Batch is a device's upload as it arrived: its id, and its readings as sent, each one JSON value.
// Each is decoded on its own (vitals.Decode), so that a malformed one refuses only itself, and only
// once the batch is known to be new: a repeated batch is answered without decoding anything.
type Batch struct {
	ID       string
	Readings []json.RawMessage
}

// bodyHash identifies a batch's readings as they were sent: the same id with other readings is a
// conflict, with the same ones a duplicate.
func bodyHash(readings []json.RawMessage) string {
	h := sha256.New()
	for _, r := range readings {
		h.Write(r)
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Upload stores a device's batch of readings: the valid ones are stored, the invalid ones listed by
// index, and a batch id seen before is answered as it was the first time without storing anything.
func (s *Service) Upload(ctx context.Context, d monitor.Device, b Batch) (UploadResult, error) {
	if err := checkBatch(b); err != nil {
		return UploadResult{}, err
	}
	hash := bodyHash(b.Readings)
	if res, done, err := s.earlierBatch(ctx, d, b.ID, hash); done || err != nil {
		return res, err
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	obs, result := validBatch(d, b, now)
	thresholds, err := s.thresholds(ctx, d.PatientID)
	if err != nil {
		return UploadResult{}, err
	}
	// Two devices of one patient may upload at once: their alert states are read, judged and written
	// by one upload at a time, or one would write back the other's stale state and hide a crossing.
	// In this process first, then across the nodes (PatientLock).
	unlock := s.patientLocks.lock(d.PatientID)
	defer unlock()
	if s.patientLock != nil {
		release, err := s.patientLock(ctx, d.PatientID)
		if err != nil {
			return UploadResult{}, fmt.Errorf("upload of %s: %w", d.PatientID, errors.Join(store.ErrUnavailable, err))
		}
		defer release()
	}
	states, err := s.store.AlertStates(ctx, d.PatientID)
	if err != nil {
		return UploadResult{}, fmt.Errorf("alert states of %s: %w", d.PatientID, err)
	}
	alerts, changed := monitor.Judge(thresholds, states, obs)
	for _, a := range alerts {
		a.ID, a.CreatedAt = auth.NewID("a_"), now
		result.Alerts = append(result.Alerts, a)
	}
	stored := monitor.Batch{DeviceID: d.ID, ID: b.ID, BodyHash: hash, ReceivedAt: now, Result: result}
	if err := s.store.PutBatch(ctx, stored, obs, result.Alerts, changed); err != nil {
		if errors.Is(err, store.ErrConflict) {
			// The same batch arrived twice at once; the other upload stored it.
			if res, done, err := s.earlierBatch(ctx, d, b.ID, hash); done || err != nil {
				return res, err
			}
		}
		return UploadResult{}, fmt.Errorf("store batch %s of %s: %w", b.ID, d.ID, err)
	}
	res := uploadResult(b.ID, result, false)
	s.publishUpload(d.PatientID, res.Alerts, obs)
	return res, nil
}

// checkBatch refuses a batch whose id or size is wrong, before anything is looked up.
func checkBatch(b Batch) error {
	if !batchIDPattern.MatchString(b.ID) {
		return errcode.Errorf(errcode.BadField, "batch_id must be 1 to 100 characters of A-Z a-z 0-9 _ . : -, not %s", errcode.Quote(b.ID))
	}
	if len(b.Readings) == 0 {
		return errcode.Errorf(errcode.BadField, "readings is missing or empty: send 1 to %d readings", MaxBatchReadings)
	}
	if len(b.Readings) > MaxBatchReadings {
		return errcode.Errorf(errcode.TooLarge, "a batch may have at most %d readings, this one has %d: split it", MaxBatchReadings, len(b.Readings))
	}
	return nil
}

// validBatch returns the batch's valid readings as the device's observations, received now, and a
// result that counts them and lists the others by index.
func validBatch(d monitor.Device, b Batch, now time.Time) ([]monitor.Observation, monitor.BatchResult) {
	var result monitor.BatchResult
	var obs []monitor.Observation
	for i, raw := range b.Readings {
		r, err := vitals.Decode(raw)
		if err == nil {
			r, err = vitals.Validate(r, now)
		}
		if err != nil {
			code := errcode.BadReading
			var ve *vitals.Error
			if errors.As(err, &ve) {
				code = ve.Code
			}
			result.Rejected = append(result.Rejected, monitor.Rejection{Index: i, Code: code, Message: fmt.Sprintf("readings[%d]: %s", i, err)})
			continue
		}
		obs = append(obs, monitor.Observation{ID: auth.NewPlainID("o-"), PatientID: d.PatientID, DeviceID: d.ID, Reading: r, ReceivedAt: now})
	}
	result.Accepted = len(obs)
	return obs, result
}

// publishUpload tells subscribers of an upload's alerts and discrete readings: alerts first, since
// they matter most to whoever is watching.
func (s *Service) publishUpload(patientID string, alerts []AlertView, obs []monitor.Observation) {
	for i := range alerts {
		s.publish(MonitorEvent{Type: EventAlert, PatientID: patientID, Alert: &alerts[i]})
	}
	for i := range obs {
		if len(obs[i].Reading.Samples) == 0 {
			s.publish(MonitorEvent{Type: EventObservation, PatientID: patientID, Observation: observationViewPtr(obs[i])})
		}
	}
}

// earlierBatch answers a batch id the device has used before: as the first time if it carries the
// same readings, conflict if not. done is false when the id is new.
func (s *Service) earlierBatch(ctx context.Context, d monitor.Device, batchID, bodyHash string) (UploadResult, bool, error) {
	b, err := s.store.Batch(ctx, d.ID, batchID)
	if errors.Is(err, store.ErrNotFound) {
		return UploadResult{}, false, nil
	}
	if err != nil {
		return UploadResult{}, true, fmt.Errorf("batch %s of %s: %w", batchID, d.ID, err)
	}
	if b.BodyHash != bodyHash {
		return UploadResult{}, true, errcode.Errorf(errcode.Conflict, "batch_id %s was used before with other readings: give every batch its own id", errcode.Quote(batchID))
	}
	return uploadResult(batchID, b.Result, true), true, nil
}

func uploadResult(batchID string, r monitor.BatchResult, duplicate bool) UploadResult {
	out := UploadResult{BatchID: batchID, Accepted: r.Accepted, Duplicate: duplicate, Rejected: []RejectionView{}, Alerts: []AlertView{}}
	for _, rj := range r.Rejected {
		out.Rejected = append(out.Rejected, RejectionView{Index: rj.Index, Code: rj.Code, Message: rj.Message})
	}
	for _, a := range r.Alerts {
		out.Alerts = append(out.Alerts, alertView(a))
	}
	return out
}

// jsonProblem says what is wrong with a reading's JSON, without Go's type names.
