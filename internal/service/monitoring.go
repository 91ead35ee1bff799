package service

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/auth"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/monitor"
	"github.com/telemed/telemed/internal/store"
	"github.com/telemed/telemed/vitals"
)

// Limits of remote patient monitoring (docs/monitoring.md).
const (
	MaxPatientName    = 120
	EnrollmentTTL     = 24 * time.Hour
	MaxDeviceName     = 80
	MaxBatchReadings  = 1000
	MaxObservations   = 10000 // one page of GET /api/v1/patients/{id}/observations
	DefaultAlertLimit = 200
	MaxAlerts         = 1000 // one page of GET /api/v1/patients/{id}/alerts
	// DeviceLinkTTL is how long a device's consultation link works: it asks for a new one each time
	// it joins, so that a revoked device cannot join for long.
	DeviceLinkTTL = time.Hour
)

// PatientView is a patient as the API shows it.
type PatientView struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	BirthDate string    `json:"birth_date,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

func patientView(p consult.Patient) PatientView {
	return PatientView{ID: p.ID, Name: p.Name, BirthDate: p.BirthDate, CreatedAt: p.CreatedAt}
}

// AddPatient creates a patient of the provider.
func (s *Service) AddPatient(ctx context.Context, p consult.Provider, actor, name, birthDate string) (PatientView, error) {
	name = strings.TrimSpace(name)
	if name == "" || utf8.RuneCountInString(name) > MaxPatientName {
		return PatientView{}, errcode.Errorf(errcode.BadField, "name must be 1 to %d characters", MaxPatientName)
	}
	birthDate = strings.TrimSpace(birthDate)
	if birthDate != "" {
		d, err := time.Parse(time.DateOnly, birthDate)
		if err != nil || d.After(s.now()) || d.Year() < 1880 {
			return PatientView{}, errcode.Errorf(errcode.BadField, "birth_date must be a past date as YYYY-MM-DD, not %s", clip(birthDate))
		}
	}
	pt := consult.Patient{ID: auth.NewPlainID("p-"), ProviderID: p.ID, Name: name, BirthDate: birthDate,
		CreatedAt: s.now().UTC().Truncate(time.Millisecond)}
	if err := s.store.CreatePatient(ctx, pt); err != nil {
		return PatientView{}, fmt.Errorf("add patient: %w", err)
	}
	s.Audit(ctx, consult.AuditEvent{Actor: actor, Action: consult.AuditPatientCreated, PatientID: pt.ID})
	return patientView(pt), nil
}

// ListPatients returns the provider's patients by name.
func (s *Service) ListPatients(ctx context.Context, p consult.Provider) ([]PatientView, error) {
	ps, err := s.store.ListPatients(ctx, p.ID, 5000)
	if err != nil {
		return nil, fmt.Errorf("list patients: %w", err)
	}
	out := make([]PatientView, 0, len(ps))
	for _, pt := range ps {
		out = append(out, patientView(pt))
	}
	return out, nil
}

// ProviderPatient returns one of the provider's patients.
func (s *Service) ProviderPatient(ctx context.Context, p consult.Provider, id string) (PatientView, error) {
	pt, err := s.ownPatient(ctx, p, id)
	return patientView(pt), err
}

// ownPatient returns the patient if it is the provider's; not_found otherwise, so that ids of other
// providers' patients cannot be probed.
func (s *Service) ownPatient(ctx context.Context, p consult.Provider, id string) (consult.Patient, error) {
	pt, err := s.store.Patient(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && pt.ProviderID != p.ID) {
		return consult.Patient{}, errcode.Errorf(errcode.NotFound, "no patient %s", clip(id))
	}
	if err != nil {
		return consult.Patient{}, fmt.Errorf("patient %s: %w", id, err)
	}
	return pt, nil
}

// PatientProvider returns the provider a patient belongs to, for the command line.
func (s *Service) PatientProvider(ctx context.Context, patientID string) (consult.Provider, error) {
	pt, err := s.store.Patient(ctx, patientID)
	if errors.Is(err, store.ErrNotFound) {
		return consult.Provider{}, errcode.Errorf(errcode.NotFound, "no patient %s", clip(patientID))
	}
	if err != nil {
		return consult.Provider{}, fmt.Errorf("patient %s: %w", patientID, err)
	}
	return s.store.ProviderByID(ctx, pt.ProviderID)
}

// EnrollmentView is a new enrollment code. Its JSON form is part of the public API.
type EnrollmentView struct {
	PatientID string    `json:"patient_id"`
	Code      string    `json:"code"`
	Link      string    `json:"link"`
	ExpiresAt time.Time `json:"expires_at"`
}

// enrollmentAlphabet leaves out letters and digits that people confuse (0/O, 1/I/L) when they type a
// code from one screen into another.
const enrollmentAlphabet = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"

// CreateEnrollment creates a one-time code that enrolls a device to the provider's patient.
func (s *Service) CreateEnrollment(ctx context.Context, p consult.Provider, actor, patientID string) (EnrollmentView, error) {
	pt, err := s.ownPatient(ctx, p, patientID)
	if err != nil {
		return EnrollmentView{}, err
	}
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	var code strings.Builder
	for i, v := range b {
		if i == 4 {
			code.WriteByte('-')
		}
		code.WriteByte(enrollmentAlphabet[int(v)%len(enrollmentAlphabet)])
	}
	now := s.now().UTC().Truncate(time.Second)
	e := monitor.Enrollment{CodeHash: auth.HashToken(code.String()), PatientID: pt.ID, ProviderID: p.ID, CreatedAt: now,
		ExpiresAt: now.Add(EnrollmentTTL)}
	if err := s.store.CreateEnrollment(ctx, e); err != nil {
		return EnrollmentView{}, fmt.Errorf("create enrollment for %s: %w", pt.ID, err)
	}
	s.Audit(ctx, consult.AuditEvent{Actor: actor, Action: consult.AuditDeviceEnrollment, PatientID: pt.ID,
		Detail: "expires " + e.ExpiresAt.Format(time.RFC3339)})
	return EnrollmentView{PatientID: pt.ID, Code: code.String(), Link: s.baseURL + "/enroll#code=" + code.String(), ExpiresAt: e.ExpiresAt}, nil
}

// normalizeCode accepts a code as people type it: any case, with or without the dash or spaces.
func normalizeCode(code string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(code) {
		if strings.ContainsRune(enrollmentAlphabet, r) {
			b.WriteRune(r)
		}
	}
	c := b.String()
	if len(c) != 8 {
		return ""
	}
	return c[:4] + "-" + c[4:]
}

// DeviceView is a device as the API shows it.
type DeviceView struct {
	ID        string     `json:"id"`
	PatientID string     `json:"patient_id"`
	Name      string     `json:"name"`
	CreatedAt time.Time  `json:"created_at"`
	LastSeen  *time.Time `json:"last_seen"`
	RevokedAt *time.Time `json:"revoked_at"`
}

func deviceView(d monitor.Device) DeviceView {
	return DeviceView{ID: d.ID, PatientID: d.PatientID, Name: d.Name, CreatedAt: d.CreatedAt, LastSeen: d.LastSeen, RevokedAt: d.RevokedAt}
}

// EnrolledDevice is the answer to an enrollment: the device and its token, shown this once.
type EnrolledDevice struct {
	Device DeviceView `json:"device"`
	Token  string     `json:"token"`
}

// EnrollDevice redeems an enrollment code for a device token.
func (s *Service) EnrollDevice(ctx context.Context, code, name string) (EnrolledDevice, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		name = "Device"
	}
	if utf8.RuneCountInString(name) > MaxDeviceName {
		return EnrolledDevice{}, errcode.Errorf(errcode.BadField, "name must be at most %d characters", MaxDeviceName)
	}
	norm := normalizeCode(code)
	if norm == "" {
		s.enrollFailures.Allow()
		return EnrolledDevice{}, errcode.Errorf(errcode.BadField, "code must be the 8-character enrollment code the provider created, such as K7QF-M2XD")
	}
	// Codes are short enough to type, so guessing is throttled: every failed attempt takes a token
	// of a server-wide allowance, and with none left every attempt waits.
	if s.enrollFailures.Tokens() < 1 {
		return EnrolledDevice{}, errcode.Errorf(errcode.Busy, "too many failed enrollment attempts on this server; try again in a minute")
	}
	token, hash := auth.NewToken("td_")
	d := monitor.Device{ID: auth.NewID("d_"), Name: name, TokenHash: hash, CreatedAt: s.now().UTC().Truncate(time.Millisecond)}
	err := s.store.RedeemEnrollment(ctx, auth.HashToken(norm), s.now(), &d)
	if errors.Is(err, store.ErrNotFound) {
		s.enrollFailures.Allow()
		return EnrolledDevice{}, errcode.Errorf(errcode.BadToken, "this enrollment code is unknown, has been used, or has expired: ask the provider for a new one")
	}
	if err != nil {
		return EnrolledDevice{}, fmt.Errorf("enroll device: %w", err)
	}
	s.Audit(ctx, consult.AuditEvent{Actor: d.ID, Action: consult.AuditDeviceEnrolled, PatientID: d.PatientID, Detail: name})
	return EnrolledDevice{Device: deviceView(d), Token: token}, nil
}

var errDeviceToken = &errcode.Error{Code: errcode.Unauthenticated, Message: "the device token is unknown or has been revoked: enroll the device again with a new code"}

// DeviceByToken returns the unrevoked device a token belongs to.
func (s *Service) DeviceByToken(ctx context.Context, token string) (monitor.Device, error) {
	if !strings.HasPrefix(token, "td_") || len(token) > 100 {
		return monitor.Device{}, errDeviceToken
	}
	d, err := s.store.DeviceByToken(ctx, auth.HashToken(token))
	if errors.Is(err, store.ErrNotFound) || (err == nil && d.RevokedAt != nil) {
		return monitor.Device{}, errDeviceToken
	}
	if err != nil {
		return monitor.Device{}, fmt.Errorf("device token: %w", err)
	}
	return d, nil
}

// ListDevices returns the devices enrolled to the provider's patient, revoked ones included.
func (s *Service) ListDevices(ctx context.Context, p consult.Provider, patientID string) ([]DeviceView, error) {
	if _, err := s.ownPatient(ctx, p, patientID); err != nil {
		return nil, err
	}
	ds, err := s.store.ListDevices(ctx, patientID)
	if err != nil {
		return nil, fmt.Errorf("devices of %s: %w", patientID, err)
	}
	out := make([]DeviceView, 0, len(ds))
	for _, d := range ds {
		out = append(out, deviceView(d))
	}
	return out, nil
}

// RevokeDevice revokes a device of one of the provider's patients: its token stops working at once.
func (s *Service) RevokeDevice(ctx context.Context, p consult.Provider, actor, deviceID string) (DeviceView, error) {
	d, err := s.store.Device(ctx, deviceID)
	if errors.Is(err, store.ErrNotFound) {
		return DeviceView{}, errcode.Errorf(errcode.NotFound, "no device %s", clip(deviceID))
	}
	if err != nil {
		return DeviceView{}, fmt.Errorf("device %s: %w", deviceID, err)
	}
	if _, err := s.ownPatient(ctx, p, d.PatientID); err != nil {
		return DeviceView{}, errcode.Errorf(errcode.NotFound, "no device %s", clip(deviceID))
	}
	if err := s.store.RevokeDevice(ctx, d.ID, s.now()); err != nil {
		return DeviceView{}, fmt.Errorf("revoke device %s: %w", d.ID, err)
	}
	s.Audit(ctx, consult.AuditEvent{Actor: actor, Action: consult.AuditDeviceRevoked, PatientID: d.PatientID, Detail: d.ID + " " + d.Name})
	d, err = s.store.Device(ctx, d.ID)
	return deviceView(d), err
}

// DeviceConsultation is a consultation a device may join now.
type DeviceConsultation struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	Link  string `json:"link"`
}

// DeviceSession is what a device learns when it asks the server: itself, and the consultation of its
// patient under way, if any.
type DeviceSession struct {
	Device       DeviceView          `json:"device"`
	Consultation *DeviceConsultation `json:"consultation"`
}

// DeviceSession returns the device and the newest open consultation of its patient that present
// reports someone is in, with a link that joins it as a device.
func (s *Service) DeviceSession(ctx context.Context, d monitor.Device, present func(consultationID string) bool) (DeviceSession, error) {
	out := DeviceSession{Device: deviceView(d)}
	cs, err := s.store.OpenConsultationsOfPatient(ctx, d.PatientID, s.now())
	if err != nil {
		return out, fmt.Errorf("consultations of %s: %w", d.PatientID, err)
	}
	for _, c := range cs {
		if present != nil && !present(c.ID) {
			continue
		}
		exp := s.now().Add(DeviceLinkTTL)
		if c.ExpiresAt.Before(exp) {
			exp = c.ExpiresAt
		}
		token := s.links.Sign(auth.LinkClaims{ConsultationID: c.ID, Role: consult.RoleDevice, ExpiresAt: exp, Subject: d.ID})
		out.Consultation = &DeviceConsultation{ID: c.ID, Title: c.Title, Link: s.baseURL + "/c/" + c.ID + "#t=" + token}
		break
	}
	return out, nil
}

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

// Upload stores a device's batch of readings: the valid ones are stored, the invalid ones listed by
// index, and a batch id seen before is answered as it was the first time without storing anything.
// readings are the batch's elements as sent, each decoded here so that one malformed reading
// refuses only itself.
func (s *Service) Upload(ctx context.Context, d monitor.Device, batchID string, readings []json.RawMessage) (UploadResult, error) {
	if !batchIDPattern.MatchString(batchID) {
		return UploadResult{}, errcode.Errorf(errcode.BadField, "batch_id must be 1 to 100 characters of A-Z a-z 0-9 _ . : -, not %s", clip(batchID))
	}
	if len(readings) == 0 {
		return UploadResult{}, errcode.Errorf(errcode.BadField, "readings is missing or empty: send 1 to %d readings", MaxBatchReadings)
	}
	if len(readings) > MaxBatchReadings {
		return UploadResult{}, errcode.Errorf(errcode.TooLarge, "a batch may have at most %d readings, this one has %d: split it", MaxBatchReadings, len(readings))
	}
	h := sha256.New()
	for _, r := range readings {
		h.Write(r)
		h.Write([]byte{'\n'})
	}
	bodyHash := hex.EncodeToString(h.Sum(nil))
	if res, done, err := s.earlierBatch(ctx, d, batchID, bodyHash); done || err != nil {
		return res, err
	}

	now := s.now().UTC().Truncate(time.Millisecond)
	var result monitor.BatchResult
	var obs []monitor.Observation
	for i, raw := range readings {
		var r vitals.Reading
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			result.Rejected = append(result.Rejected, monitor.Rejection{Index: i, Code: errcode.BadReading,
				Message: fmt.Sprintf("readings[%d]: not a reading: %s", i, jsonProblem(err))})
			continue
		}
		r, err := vitals.Validate(r, now)
		if err != nil {
			var ve *vitals.Error
			code := errcode.BadReading
			if errors.As(err, &ve) {
				code = ve.Code
			}
			result.Rejected = append(result.Rejected, monitor.Rejection{Index: i, Code: code, Message: fmt.Sprintf("readings[%d]: %s", i, err)})
			continue
		}
		obs = append(obs, monitor.Observation{ID: auth.NewPlainID("o-"), PatientID: d.PatientID, DeviceID: d.ID, Reading: r, ReceivedAt: now})
	}
	result.Accepted = len(obs)

	thresholds, err := s.thresholds(ctx, d.PatientID)
	if err != nil {
		return UploadResult{}, err
	}
	// Two devices of one patient may upload at once: their alert states are read, judged and written
	// by one upload at a time, or one would write back the other's stale state and hide a crossing.
	// (In-process: several nodes sharing a database would need the store to do this in one
	// transaction.)
	unlock := s.patientLocks.lock(d.PatientID)
	defer unlock()
	states, err := s.store.AlertStates(ctx, d.PatientID)
	if err != nil {
		return UploadResult{}, fmt.Errorf("alert states of %s: %w", d.PatientID, err)
	}
	before := maps.Clone(states)
	// Crossings are judged in the order the readings were measured.
	byTime := slices.Clone(obs)
	slices.SortStableFunc(byTime, func(a, b monitor.Observation) int { return a.Reading.Time.Compare(b.Reading.Time) })
	for _, o := range byTime {
		for _, a := range thresholds.Check(o, states) {
			a.ID, a.CreatedAt = auth.NewID("a_"), now
			result.Alerts = append(result.Alerts, a)
		}
	}
	// Only the states this batch changed are written back.
	changed := monitor.States{}
	for code, bound := range states {
		if was, ok := before[code]; !ok || was != bound {
			changed[code] = bound
		}
	}
	b := monitor.Batch{DeviceID: d.ID, ID: batchID, BodyHash: bodyHash, ReceivedAt: now, Result: result}
	if err := s.store.PutBatch(ctx, b, obs, result.Alerts, changed); err != nil {
		if errors.Is(err, store.ErrConflict) {
			// The same batch arrived twice at once; the other upload stored it.
			if res, done, err := s.earlierBatch(ctx, d, batchID, bodyHash); done || err != nil {
				return res, err
			}
		}
		return UploadResult{}, fmt.Errorf("store batch %s of %s: %w", batchID, d.ID, err)
	}
	res := uploadResult(batchID, result, false)
	// Alerts first: they matter most to whoever is watching.
	for i := range res.Alerts {
		s.events.publish(MonitorEvent{Type: EventAlert, PatientID: d.PatientID, Alert: &res.Alerts[i]})
	}
	for i := range obs {
		if len(obs[i].Reading.Samples) == 0 {
			s.events.publish(MonitorEvent{Type: EventObservation, PatientID: d.PatientID, Observation: observationViewPtr(obs[i])})
		}
	}
	return res, nil
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
		return UploadResult{}, true, errcode.Errorf(errcode.Conflict, "batch_id %s was used before with other readings: give every batch its own id", clip(batchID))
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
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		switch {
		case te.Field == "":
			return fmt.Sprintf("a reading must be a JSON object, not %s", article(te.Value))
		case strings.HasPrefix(te.Value, "number") && te.Type.Kind().String() == "float64":
			return fmt.Sprintf("%s is %s: too large for any reading", te.Field, te.Value)
		}
		return fmt.Sprintf("%s must be %s, not %s", te.Field, jsonKind(te.Type.Kind().String()), article(te.Value))
	}
	var pe *time.ParseError
	if errors.As(err, &pe) {
		return fmt.Sprintf("time must be RFC 3339 such as \"2026-11-24T10:00:00.250Z\", not %s", clip(pe.Value))
	}
	return err.Error()
}

// article puts "a" or "an" before a JSON kind as encoding/json names it ("array", "number 1e400").
func article(v string) string {
	if v != "" && strings.ContainsRune("aeiou", rune(v[0])) {
		return "an " + v
	}
	return "a " + v
}

func jsonKind(k string) string {
	switch k {
	case "float64", "ptr":
		return "a number"
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "struct":
		return "an object"
	}
	return k
}

// ObservationView is a stored reading as the API shows it: its id and the reading's fields.
type ObservationView struct {
	ID string `json:"id"`
	vitals.Reading
}

func observationViewPtr(o monitor.Observation) *ObservationView {
	return &ObservationView{ID: o.ID, Reading: o.Reading}
}

// PatientObservations returns the provider's patient's observations matching q, oldest first: at
// most q.Limit (MaxObservations at most), the latest of them when more match (truncated says so).
// Without codes it leaves waveforms out.
func (s *Service) PatientObservations(ctx context.Context, p consult.Provider, patientID string, q store.ObservationQuery) ([]ObservationView, bool, error) {
	if _, err := s.ownPatient(ctx, p, patientID); err != nil {
		return nil, false, err
	}
	q.PatientID = patientID
	if len(q.Codes) == 0 {
		for _, sig := range vitals.Signals() {
			if sig.Kind != vitals.KindWaveform {
				q.Codes = append(q.Codes, sig.Code)
			}
		}
	}
	for i, c := range q.Codes {
		sig, ok := vitals.Lookup(c)
		if !ok {
			return nil, false, errcode.Errorf(errcode.BadField, "code %s is not a signal telemed knows", clip(c))
		}
		q.Codes[i] = sig.Code
	}
	if q.Limit <= 0 || q.Limit > MaxObservations {
		q.Limit = MaxObservations
	}
	limit := q.Limit
	q.Limit++
	q.Newest = true
	obs, err := s.store.Observations(ctx, q)
	if err != nil {
		return nil, false, fmt.Errorf("observations of %s: %w", patientID, err)
	}
	truncated := len(obs) > limit
	if truncated {
		obs = obs[1:] // the one past the limit is the oldest
	}
	out := make([]ObservationView, 0, len(obs))
	for _, o := range obs {
		out = append(out, ObservationView{ID: o.ID, Reading: o.Reading})
	}
	return out, truncated, nil
}

// thresholds returns a patient's thresholds: the defaults, with the provider's changes.
func (s *Service) thresholds(ctx context.Context, patientID string) (monitor.Thresholds, error) {
	set, err := s.store.Thresholds(ctx, patientID)
	if err != nil {
		return nil, fmt.Errorf("thresholds of %s: %w", patientID, err)
	}
	t := monitor.DefaultThresholds()
	for code, th := range set {
		t[code] = th
	}
	return t, nil
}

// Thresholds returns the provider's patient's thresholds.
func (s *Service) Thresholds(ctx context.Context, p consult.Provider, patientID string) (monitor.Thresholds, error) {
	if _, err := s.ownPatient(ctx, p, patientID); err != nil {
		return nil, err
	}
	return s.thresholds(ctx, patientID)
}

// SetThresholds changes some of the provider's patient's thresholds and returns all of them.
func (s *Service) SetThresholds(ctx context.Context, p consult.Provider, actor, patientID string, changes monitor.Thresholds) (monitor.Thresholds, error) {
	if _, err := s.ownPatient(ctx, p, patientID); err != nil {
		return nil, err
	}
	if len(changes) == 0 {
		return nil, errcode.Errorf(errcode.BadField, "thresholds is missing or empty: send {\"thresholds\": {\"<code>\": {\"low\": n, \"high\": n}}}")
	}
	valid := vitals.ThresholdCodes()
	var changed []string
	for code, th := range changes {
		sig, ok := vitals.Lookup(code)
		if !ok || !containsString(valid, code) {
			return nil, errcode.Errorf(errcode.BadField, "thresholds: %s is not a code a threshold can be set for (codes: %s)", clip(code), strings.Join(valid, ", "))
		}
		for _, b := range []struct {
			name string
			v    *float64
		}{{"low", th.Low}, {"high", th.High}} {
			if b.v != nil && (*b.v < sig.Min || *b.v > sig.Max) {
				return nil, errcode.Errorf(errcode.BadField, "thresholds.%s.%s: %g %s is outside the possible %g to %g", code, b.name, *b.v, sig.UnitDisplay, sig.Min, sig.Max)
			}
		}
		if th.Low != nil && th.High != nil && *th.Low >= *th.High {
			return nil, errcode.Errorf(errcode.BadField, "thresholds.%s: low (%g) must be below high (%g)", code, *th.Low, *th.High)
		}
		changed = append(changed, code)
	}
	if err := s.store.PutThresholds(ctx, patientID, changes); err != nil {
		return nil, fmt.Errorf("set thresholds of %s: %w", patientID, err)
	}
	s.Audit(ctx, consult.AuditEvent{Actor: actor, Action: consult.AuditThresholdsChanged, PatientID: patientID,
		Detail: strings.Join(sortedStrings(changed), ", ")})
	return s.thresholds(ctx, patientID)
}

// Alerts returns the provider's patient's alerts, newest first.
func (s *Service) Alerts(ctx context.Context, p consult.Provider, patientID string, limit int) ([]AlertView, error) {
	if _, err := s.ownPatient(ctx, p, patientID); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > MaxAlerts {
		limit = DefaultAlertLimit
	}
	as, err := s.store.Alerts(ctx, patientID, limit)
	if err != nil {
		return nil, fmt.Errorf("alerts of %s: %w", patientID, err)
	}
	out := make([]AlertView, 0, len(as))
	for _, a := range as {
		out = append(out, alertView(a))
	}
	return out, nil
}

// PatientAuditTrail returns the audit lines about the provider's patient, oldest first.
func (s *Service) PatientAuditTrail(ctx context.Context, p consult.Provider, patientID string) ([]consult.AuditEvent, error) {
	if _, err := s.ownPatient(ctx, p, patientID); err != nil {
		return nil, err
	}
	return s.store.PatientAudit(ctx, patientID)
}

// ExportPatient returns the provider's patient for an export, writing the export to the audit trail.
func (s *Service) ExportPatient(ctx context.Context, p consult.Provider, actor, patientID, detail string) (consult.Patient, error) {
	pt, err := s.ownPatient(ctx, p, patientID)
	if err != nil {
		return pt, err
	}
	s.Audit(ctx, consult.AuditEvent{Actor: actor, Action: consult.AuditExported, PatientID: pt.ID, Detail: detail})
	return pt, nil
}

// ExportObservations returns a page of the provider's patient's observations matching q and how many
// match in all (only that when q.Limit is negative), writing the export to the audit trail.
func (s *Service) ExportObservations(ctx context.Context, p consult.Provider, actor string, q store.ObservationQuery, detail string) ([]monitor.Observation, int, error) {
	if _, err := s.ownPatient(ctx, p, q.PatientID); err != nil {
		return nil, 0, err
	}
	total, err := s.store.CountObservations(ctx, q)
	if err != nil {
		return nil, 0, fmt.Errorf("count observations of %s: %w", q.PatientID, err)
	}
	var obs []monitor.Observation
	if q.Limit >= 0 { // a negative limit asks for the total only
		if obs, err = s.store.Observations(ctx, q); err != nil {
			return nil, 0, fmt.Errorf("observations of %s: %w", q.PatientID, err)
		}
	}
	s.Audit(ctx, consult.AuditEvent{Actor: actor, Action: consult.AuditExported, PatientID: q.PatientID,
		Detail: fmt.Sprintf("%s (%d of %d)", detail, len(obs), total)})
	return obs, total, nil
}

// ExportObservation returns one of the provider's patients' observations, writing the export to the
// audit trail.
func (s *Service) ExportObservation(ctx context.Context, p consult.Provider, actor, id string) (monitor.Observation, error) {
	o, err := s.store.Observation(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return o, errcode.Errorf(errcode.NotFound, "no observation %s", clip(id))
	}
	if err != nil {
		return o, fmt.Errorf("observation %s: %w", id, err)
	}
	if _, err := s.ownPatient(ctx, p, o.PatientID); err != nil {
		return monitor.Observation{}, errcode.Errorf(errcode.NotFound, "no observation %s", clip(id))
	}
	s.Audit(ctx, consult.AuditEvent{Actor: actor, Action: consult.AuditExported, PatientID: o.PatientID, Detail: "Observation/" + id})
	return o, nil
}

// DeviceName returns a device's name, for exports; "" if it is unknown.
func (s *Service) DeviceName(ctx context.Context, id string) string {
	d, err := s.store.Device(ctx, id)
	if err != nil {
		return ""
	}
	return d.Name
}

func containsString(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// stripedLocks serialises work on one patient without a lock per patient: patients share one of a
// fixed number of mutexes by the hash of their id.
type stripedLocks [64]sync.Mutex

func (l *stripedLocks) lock(key string) (unlock func()) {
	h := fnv.New32a()
	h.Write([]byte(key))
	m := &l[h.Sum32()%uint32(len(l))]
	m.Lock()
	return m.Unlock
}
