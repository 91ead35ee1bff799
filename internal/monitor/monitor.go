// Package monitor is remote patient monitoring's domain: the devices enrolled to a patient, the
// observations they send, the patient's alert thresholds, and the alerts a crossing raises. It knows
// nothing of HTTP, SQL or data channels; the vocabulary of readings is package vitals.
package monitor

import (
	"maps"
	"slices"
	"time"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/vitals"
)

// Device is an agent enrolled to send one patient's readings.
type Device struct {
	ID        string
	PatientID string
	Name      string
	TokenHash string
	CreatedAt time.Time
	RevokedAt *time.Time
	LastSeen  *time.Time
}

// Enrollment is a one-time code a provider creates to enroll a device to a patient.
type Enrollment struct {
	CodeHash   string
	PatientID  string
	ProviderID string
	CreatedAt  time.Time
	ExpiresAt  time.Time
}

// Observation is a stored reading of one patient.
type Observation struct {
	ID         string
	PatientID  string
	DeviceID   string
	Reading    vitals.Reading // canonical, as vitals.Validate returns it
	ReceivedAt time.Time
}

// Batch is one upload of a device: its id makes a repeated upload (the answer was lost, the agent
// restarted) store nothing twice.
type Batch struct {
	DeviceID   string
	ID         string
	BodyHash   string // of the readings as sent: the same id with other readings is a conflict
	ReceivedAt time.Time
	Result     BatchResult
}

// BatchResult is what the server made of a batch.
type BatchResult struct {
	Accepted int
	Rejected []Rejection
	Alerts   []Alert
}

// Rejection is a reading of a batch that was refused, by its index in the batch.
type Rejection struct {
	Index   int
	Code    errcode.Code // vitals.Error's code
	Message string
}

// Alert is a reading that crossed one of its patient's thresholds.
type Alert struct {
	ID            string
	PatientID     string
	ObservationID string
	Code          string // the signal or panel component that crossed
	Value         float64
	Unit          string
	Bound         string  // "low" or "high"
	Limit         float64 // the threshold it crossed
	At            time.Time
	CreatedAt     time.Time
}

// Thresholds are a patient's alert thresholds by code (vitals.ThresholdCodes).
type Thresholds map[string]vitals.Threshold

// DefaultThresholds returns the thresholds of a patient who has not had any set.
func DefaultThresholds() Thresholds {
	t := Thresholds{}
	for _, s := range vitals.Signals() {
		switch s.Kind {
		case vitals.KindValue:
			t[s.Code] = s.Default
		case vitals.KindPanel:
			for _, c := range s.Components {
				t[c.Code] = c.Default
			}
		}
	}
	return t
}

// States is where each of a patient's signals (and panel components) stood at its latest reading:
// "" within its thresholds, "low" or "high". A missing code is "".
type States map[string]string

// Check returns the alerts a canonical reading raises against the thresholds, given where its
// signals stood before (states, which it updates). An alert is raised when a value crosses out of
// its range: the first reading below the low bound (or above the high one) after one within, or
// after one beyond the other bound. Readings that stay out raise no more, so a desaturating patient
// measured every second gives one alert, not one a second. A blood pressure may raise two (one per
// component). The alerts have no ids yet.
func (t Thresholds) Check(o Observation, states States) []Alert {
	var out []Alert
	check := func(code string, v *float64, unit string) {
		if v == nil {
			return
		}
		th := t[code]
		bound, crossed := th.Crossed(*v)
		was := states[code]
		states[code] = bound
		if !crossed || was == bound {
			return
		}
		limit := th.High
		if bound == "low" {
			limit = th.Low
		}
		out = append(out, Alert{PatientID: o.PatientID, ObservationID: o.ID, Code: code, Value: *v, Unit: unit,
			Bound: bound, Limit: *limit, At: o.Reading.Time})
	}
	r := o.Reading
	check(r.Code, r.Value, r.Unit)
	for _, c := range r.Components {
		check(c.Code, c.Value, c.Unit)
	}
	return out
}

// Judge returns the alerts that a batch of observations raises against the thresholds, judged in
// the order the readings were measured (not the order they arrived), starting from where the
// patient's signals stood (states, which it leaves as they stand after the batch), and the states
// that the batch changed: only those need to be written back. The alerts have no ids yet.
func Judge(t Thresholds, states States, obs []Observation) (alerts []Alert, changed States) {
	before := maps.Clone(states)
	byTime := slices.Clone(obs)
	slices.SortStableFunc(byTime, func(a, b Observation) int { return a.Reading.Time.Compare(b.Reading.Time) })
	for _, o := range byTime {
		alerts = append(alerts, t.Check(o, states)...)
	}
	changed = States{}
	for code, bound := range states {
		if was, ok := before[code]; !ok || was != bound {
			changed[code] = bound
		}
	}
	return alerts, changed
}
