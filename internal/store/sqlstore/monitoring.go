package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/monitor"
	"github.com/telemed/telemed/internal/store"
	"github.com/telemed/telemed/vitals"
)

const patientCols = `id, provider_id, name, birth_date, created_at`

func scanPatient(row scanner) (consult.Patient, error) {
	var p consult.Patient
	var created int64
	if err := row.Scan(&p.ID, &p.ProviderID, &p.Name, &p.BirthDate, &created); err != nil {
		return consult.Patient{}, notFound(err)
	}
	p.CreatedAt = fromMS(created)
	return p, nil
}

// CreatePatient stores a new patient.
func (s *Store) CreatePatient(ctx context.Context, p consult.Patient) error {
	_, err := s.exec(ctx, `INSERT INTO patients (`+patientCols+`) VALUES (?, ?, ?, ?, ?)`,
		p.ID, p.ProviderID, p.Name, p.BirthDate, ms(p.CreatedAt))
	if s.dialect.IsUnique(err) {
		return fmt.Errorf("patient %s: %w", p.ID, store.ErrConflict)
	}
	return err
}

// Patient finds a patient by id.
func (s *Store) Patient(ctx context.Context, id string) (consult.Patient, error) {
	return scanPatient(s.row(ctx, `SELECT `+patientCols+` FROM patients WHERE id = ?`, id))
}

// ListPatients returns a provider's patients by name.
func (s *Store) ListPatients(ctx context.Context, providerID string, limit int) ([]consult.Patient, error) {
	return queryAll(ctx, s.conn, scanPatient, `SELECT `+patientCols+` FROM patients WHERE provider_id = ?
		ORDER BY name COLLATE NOCASE, id LIMIT ?`, providerID, limit)
}

// OpenConsultationsOfPatient returns the patient's open consultations, newest first.
func (s *Store) OpenConsultationsOfPatient(ctx context.Context, patientID string, now time.Time) ([]consult.Consultation, error) {
	return queryAll(ctx, s.conn, scanConsultation, `SELECT `+consultationCols+` FROM consultations
		WHERE patient_id = ? AND ended_at IS NULL AND expires_at > ? ORDER BY created_at DESC, id`, patientID, ms(now))
}

// CreateEnrollment stores an enrollment code's hash.
func (s *Store) CreateEnrollment(ctx context.Context, e monitor.Enrollment) error {
	_, err := s.exec(ctx, `INSERT INTO enrollments (code_hash, patient_id, provider_id, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?)`, e.CodeHash, e.PatientID, e.ProviderID, ms(e.CreatedAt), ms(e.ExpiresAt))
	if s.dialect.IsUnique(err) {
		return fmt.Errorf("enrollment: %w", store.ErrConflict)
	}
	return err
}

// RedeemEnrollment uses an enrollment to create a device.
func (s *Store) RedeemEnrollment(ctx context.Context, codeHash string, now time.Time, d *monitor.Device) error {
	// A wrong code (most attempts, when someone guesses) is answered without taking the write lock.
	var n int
	if err := s.row(ctx, `SELECT count(*) FROM enrollments WHERE code_hash = ? AND used_at IS NULL AND expires_at > ?`,
		codeHash, ms(now)).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return s.inTx(ctx, func(c conn) error {
		var patientID string
		err := c.row(ctx, `UPDATE enrollments SET used_at = ? WHERE code_hash = ? AND used_at IS NULL AND expires_at > ?
			RETURNING patient_id`, ms(now), codeHash, ms(now)).Scan(&patientID)
		if err != nil {
			return notFound(err)
		}
		d.PatientID = patientID
		if _, err := c.exec(ctx, `INSERT INTO devices (id, patient_id, name, token_hash, created_at) VALUES (?, ?, ?, ?, ?)`,
			d.ID, d.PatientID, d.Name, d.TokenHash, ms(d.CreatedAt)); err != nil {
			return fmt.Errorf("create device: %w", err)
		}
		return nil
	})
}

const deviceCols = `id, patient_id, name, token_hash, created_at, revoked_at, last_seen`

func scanDevice(row scanner) (monitor.Device, error) {
	var d monitor.Device
	var created int64
	var revoked, seen sql.NullInt64
	if err := row.Scan(&d.ID, &d.PatientID, &d.Name, &d.TokenHash, &created, &revoked, &seen); err != nil {
		return monitor.Device{}, notFound(err)
	}
	d.CreatedAt = fromMS(created)
	d.RevokedAt, d.LastSeen = fromNullMS(revoked), fromNullMS(seen)
	return d, nil
}

// DeviceByToken returns the device with this token hash.
func (s *Store) DeviceByToken(ctx context.Context, tokenHash string) (monitor.Device, error) {
	return scanDevice(s.row(ctx, `SELECT `+deviceCols+` FROM devices WHERE token_hash = ?`, tokenHash))
}

// Device returns a device by id.
func (s *Store) Device(ctx context.Context, id string) (monitor.Device, error) {
	return scanDevice(s.row(ctx, `SELECT `+deviceCols+` FROM devices WHERE id = ?`, id))
}

// ListDevices returns a patient's devices, oldest first.
func (s *Store) ListDevices(ctx context.Context, patientID string) ([]monitor.Device, error) {
	return queryAll(ctx, s.conn, scanDevice, `SELECT `+deviceCols+` FROM devices WHERE patient_id = ? ORDER BY created_at, id`, patientID)
}

// RevokeDevice marks a device revoked.
func (s *Store) RevokeDevice(ctx context.Context, id string, at time.Time) error {
	return s.setOnce(ctx, `UPDATE devices SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?`, at, id)
}

// Batch returns a device's earlier upload.
func (s *Store) Batch(ctx context.Context, deviceID, batchID string) (monitor.Batch, error) {
	b := monitor.Batch{DeviceID: deviceID, ID: batchID}
	var received int64
	var result string
	err := s.row(ctx, `SELECT body_hash, received_at, result FROM batches WHERE device_id = ? AND batch_id = ?`,
		deviceID, batchID).Scan(&b.BodyHash, &received, &result)
	if err != nil {
		return monitor.Batch{}, notFound(err)
	}
	b.ReceivedAt = fromMS(received)
	if err := json.Unmarshal([]byte(result), &b.Result); err != nil {
		return monitor.Batch{}, fmt.Errorf("batch %s: %w", batchID, err)
	}
	return b, nil
}

// PutBatch stores a batch with its observations and alerts.
func (s *Store) PutBatch(ctx context.Context, b monitor.Batch, obs []monitor.Observation, alerts []monitor.Alert, states monitor.States) error {
	result, err := json.Marshal(b.Result)
	if err != nil {
		return fmt.Errorf("batch %s: %w", b.ID, err)
	}
	return s.inTx(ctx, func(c conn) error {
		_, err := c.exec(ctx, `INSERT INTO batches (device_id, batch_id, body_hash, received_at, result) VALUES (?, ?, ?, ?, ?)`,
			b.DeviceID, b.ID, b.BodyHash, ms(b.ReceivedAt), string(result))
		if s.dialect.IsUnique(err) {
			return fmt.Errorf("batch %s: %w", b.ID, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("batch %s: %w", b.ID, err)
		}
		if err := insertRows(ctx, c, s.dialect.InsertRows, "observations", observationColumns, observationRows(obs)); err != nil {
			return fmt.Errorf("batch %s: %w", b.ID, err)
		}
		if err := insertRows(ctx, c, s.dialect.InsertRows, "alerts", alertColumns, alertRows(alerts)); err != nil {
			return fmt.Errorf("batch %s: %w", b.ID, err)
		}
		if _, err := c.exec(ctx, `UPDATE devices SET last_seen = ? WHERE id = ?`, ms(b.ReceivedAt), b.DeviceID); err != nil {
			return fmt.Errorf("batch %s: device %s: %w", b.ID, b.DeviceID, err)
		}
		return putStates(ctx, c, b, states)
	})
}

var (
	observationColumns = strings.Split(observationCols, ", ")
	alertColumns       = strings.Split(alertCols, ", ")
)

// observationRows are the values of observations' columns (observationCols) for obs.
func observationRows(obs []monitor.Observation) [][]any {
	rows := make([][]any, len(obs))
	for i, o := range obs {
		r := o.Reading
		var value, period sql.NullFloat64
		if r.Value != nil {
			value = sql.NullFloat64{Float64: *r.Value, Valid: true}
		}
		var components, samples sql.NullString
		if len(r.Components) > 0 {
			components = jsonText(r.Components)
		}
		if len(r.Samples) > 0 {
			samples = jsonText(r.Samples)
			period = sql.NullFloat64{Float64: r.PeriodMS, Valid: true}
		}
		rows[i] = []any{o.ID, o.PatientID, o.DeviceID, r.Code, ms(r.Time), value, r.Unit,
			components, samples, period, r.Device, ms(o.ReceivedAt)}
	}
	return rows
}

// alertRows are the values of alerts' columns (alertCols) for alerts.
func alertRows(alerts []monitor.Alert) [][]any {
	rows := make([][]any, len(alerts))
	for i, a := range alerts {
		rows[i] = []any{a.ID, a.PatientID, a.ObservationID, a.Code, a.Value, a.Unit, a.Bound, a.Limit, ms(a.At), ms(a.CreatedAt)}
	}
	return rows
}

// putStates keeps the alert states of the patient of b's device.
func putStates(ctx context.Context, c conn, b monitor.Batch, states monitor.States) error {
	if len(states) == 0 {
		return nil
	}
	var patientID string
	if err := c.row(ctx, `SELECT patient_id FROM devices WHERE id = ?`, b.DeviceID).Scan(&patientID); err != nil {
		return fmt.Errorf("batch %s: device %s: %w", b.ID, b.DeviceID, notFound(err))
	}
	for code, bound := range states {
		if _, err := c.exec(ctx, `INSERT INTO alert_states (patient_id, code, bound) VALUES (?, ?, ?)
			ON CONFLICT(patient_id, code) DO UPDATE SET bound = excluded.bound`, patientID, code, bound); err != nil {
			return fmt.Errorf("alert state %s: %w", code, err)
		}
	}
	return nil
}

// AlertStates returns where a patient's signals stood at their latest readings.
func (s *Store) AlertStates(ctx context.Context, patientID string) (monitor.States, error) {
	rows, err := s.query(ctx, `SELECT code, bound FROM alert_states WHERE patient_id = ?`, patientID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := monitor.States{}
	for rows.Next() {
		var code, bound string
		if err := rows.Scan(&code, &bound); err != nil {
			return nil, err
		}
		out[code] = bound
	}
	return out, rows.Err()
}

func jsonText(v any) sql.NullString {
	b, err := json.Marshal(v)
	if err != nil {
		// Only validated readings get here: their numbers are finite.
		panic(fmt.Sprintf("sqlstore: encode %T: %v", v, err))
	}
	return sql.NullString{String: string(b), Valid: true}
}

const alertCols = `id, patient_id, observation_id, code, value, unit, bound, limit_value, at, created_at`

const observationCols = `id, patient_id, device_id, code, effective_at, value, unit, components, samples, period_ms, device_name, received_at`

func scanObservation(row scanner) (monitor.Observation, error) {
	var o monitor.Observation
	var effective, received int64
	var value, period sql.NullFloat64
	var components, samples sql.NullString
	r := &o.Reading
	if err := row.Scan(&o.ID, &o.PatientID, &o.DeviceID, &r.Code, &effective, &value, &r.Unit, &components, &samples,
		&period, &r.Device, &received); err != nil {
		return monitor.Observation{}, notFound(err)
	}
	r.Time, o.ReceivedAt = fromMS(effective), fromMS(received)
	if value.Valid {
		r.Value = vitals.Float(value.Float64)
	}
	if components.Valid {
		if err := json.Unmarshal([]byte(components.String), &r.Components); err != nil {
			return monitor.Observation{}, fmt.Errorf("observation %s components: %w", o.ID, err)
		}
	}
	if samples.Valid {
		if err := json.Unmarshal([]byte(samples.String), &r.Samples); err != nil {
			return monitor.Observation{}, fmt.Errorf("observation %s samples: %w", o.ID, err)
		}
		r.PeriodMS = period.Float64
	}
	return o, nil
}

func observationWhere(q store.ObservationQuery) (string, []any) {
	where := []string{"patient_id = ?"}
	args := []any{q.PatientID}
	if len(q.Codes) > 0 {
		where = append(where, "code IN (?"+strings.Repeat(", ?", len(q.Codes)-1)+")")
		for _, c := range q.Codes {
			args = append(args, c)
		}
	}
	if !q.From.IsZero() {
		where = append(where, "effective_at >= ?")
		args = append(args, ms(q.From))
	}
	if !q.To.IsZero() {
		where = append(where, "effective_at <= ?")
		args = append(args, ms(q.To))
	}
	return strings.Join(where, " AND "), args
}

// Observations returns a patient's observations matching q, oldest first.
func (s *Store) Observations(ctx context.Context, q store.ObservationQuery) ([]monitor.Observation, error) {
	where, args := observationWhere(q)
	order := ` ORDER BY effective_at, id`
	if q.Newest {
		order = ` ORDER BY effective_at DESC, id DESC`
	}
	query := `SELECT ` + observationCols + ` FROM observations WHERE ` + where + order
	if q.Limit > 0 || q.Offset > 0 {
		limit := q.Limit
		if limit <= 0 {
			// No limit, said in a way both engines take (SQLite's -1 is an error on PostgreSQL, its
			// LIMIT ALL an error on SQLite).
			limit = math.MaxInt64
		}
		query += ` LIMIT ? OFFSET ?`
		args = append(args, limit, q.Offset)
	}
	out, err := queryAll(ctx, s.conn, scanObservation, query, args...)
	if q.Newest {
		slices.Reverse(out)
	}
	return out, err
}

// CountObservations counts a patient's observations matching q.
func (s *Store) CountObservations(ctx context.Context, q store.ObservationQuery) (int, error) {
	where, args := observationWhere(q)
	var n int
	err := s.row(ctx, `SELECT count(*) FROM observations WHERE `+where, args...).Scan(&n)
	return n, err
}

// Observation returns an observation by id.
func (s *Store) Observation(ctx context.Context, id string) (monitor.Observation, error) {
	return scanObservation(s.row(ctx, `SELECT `+observationCols+` FROM observations WHERE id = ?`, id))
}

// Thresholds returns the thresholds set for a patient.
func (s *Store) Thresholds(ctx context.Context, patientID string) (monitor.Thresholds, error) {
	rows, err := s.query(ctx, `SELECT code, low, high FROM thresholds WHERE patient_id = ?`, patientID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := monitor.Thresholds{}
	for rows.Next() {
		var code string
		var low, high sql.NullFloat64
		if err := rows.Scan(&code, &low, &high); err != nil {
			return nil, err
		}
		var t vitals.Threshold
		if low.Valid {
			t.Low = vitals.Float(low.Float64)
		}
		if high.Valid {
			t.High = vitals.Float(high.Float64)
		}
		out[code] = t
	}
	return out, rows.Err()
}

// PutThresholds sets some of a patient's thresholds.
func (s *Store) PutThresholds(ctx context.Context, patientID string, t monitor.Thresholds) error {
	return s.inTx(ctx, func(c conn) error {
		for code, th := range t {
			if _, err := c.exec(ctx, `INSERT INTO thresholds (patient_id, code, low, high) VALUES (?, ?, ?, ?)
				ON CONFLICT(patient_id, code) DO UPDATE SET low = excluded.low, high = excluded.high`,
				patientID, code, nullFloat(th.Low), nullFloat(th.High)); err != nil {
				if s.dialect.IsForeignKey(err) {
					return fmt.Errorf("thresholds of %s: patient %w", patientID, store.ErrNotFound)
				}
				return fmt.Errorf("threshold %s: %w", code, err)
			}
		}
		return nil
	})
}

func nullFloat(v *float64) sql.NullFloat64 {
	if v == nil {
		return sql.NullFloat64{}
	}
	return sql.NullFloat64{Float64: *v, Valid: true}
}

// Alerts returns a patient's alerts, newest first.
func (s *Store) Alerts(ctx context.Context, patientID string, limit int) ([]monitor.Alert, error) {
	rows, err := s.query(ctx, `SELECT `+alertCols+`
		FROM alerts WHERE patient_id = ? ORDER BY created_at DESC, at DESC, id DESC LIMIT ?`, patientID, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []monitor.Alert
	for rows.Next() {
		var a monitor.Alert
		var at, created int64
		if err := rows.Scan(&a.ID, &a.PatientID, &a.ObservationID, &a.Code, &a.Value, &a.Unit, &a.Bound, &a.Limit, &at, &created); err != nil {
			return nil, err
		}
		a.At, a.CreatedAt = fromMS(at), fromMS(created)
		out = append(out, a)
	}
	return out, rows.Err()
}
