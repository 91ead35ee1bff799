// Package vitals is the vocabulary of remote patient monitoring that the server, the device agent and
// Go programs built on the client share: what a reading is, which signals telemed knows (their LOINC
// or IEEE 11073 MDC codes and UCUM units), and which values are physiologically possible. It does no
// I/O. docs/monitoring.md describes the JSON form of a reading, which is a public contract.
package vitals

import (
	"fmt"
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/telemed/telemed/errcode"
)

// Code systems of the signals.
const (
	SystemLOINC = "http://loinc.org"
	// SystemMDC is ISO/IEEE 11073-10101 (MDC), the nomenclature of medical device communication.
	SystemMDC  = "urn:oid:2.16.840.1.113883.6.24"
	SystemUCUM = "http://unitsofmeasure.org"
)

// Codes of the signals telemed knows. Blood pressure is a panel of two components.
const (
	HeartRate        = "8867-4"
	OxygenSaturation = "2708-6"
	// PulseOximetry is the LOINC code of oxygen saturation measured by pulse oximetry. A reading may
	// use it instead of OxygenSaturation; it is stored as OxygenSaturation, and exported with both.
	PulseOximetry   = "59408-5"
	BloodPressure   = "85354-9"
	Systolic        = "8480-6"
	Diastolic       = "8462-4"
	BodyTemperature = "8310-5"
	RespiratoryRate = "9279-1"
	// ECG is MDC_ECG_ELEC_POTL_I, the electric potential of ECG lead I (a single-lead device's lead).
	ECG = "131329"
)

// Reading is one measurement: a number (heart rate), a panel of components (blood pressure), or a
// waveform (ECG: Samples taken every PeriodMS milliseconds from Time on). Its JSON form is part of the
// public API: the stdin format of `telemed device`, the body of POST /api/v1/observations and the
// live data channel frames all carry it.
type Reading struct {
	Code string `json:"code"`
	// Time is when it was measured (for a waveform, its first sample), by the device's clock.
	Time time.Time `json:"time"`
	// Value and Unit are set for a single-valued signal.
	Value *float64 `json:"value,omitempty"`
	Unit  string   `json:"unit,omitempty"`
	// Components are set for a panel (blood pressure), each with its own code, value and unit.
	Components []Component `json:"components,omitempty"`
	// Samples, PeriodMS and Unit are set for a waveform.
	Samples  []float64 `json:"samples,omitempty"`
	PeriodMS float64   `json:"period_ms,omitempty"`
	// Device names what measured it ("Nonin 3230"); optional, for the record: at most MaxDeviceName
	// characters, no control characters.
	Device string `json:"device,omitempty"`
}

// Component is one value of a panel.
type Component struct {
	Code  string   `json:"code"`
	Value *float64 `json:"value"`
	Unit  string   `json:"unit"`
}

// Float returns a pointer to v, for Reading.Value and Component.Value.
func Float(v float64) *float64 { return &v }

// Kind is the shape of a signal's readings.
type Kind int

// The kinds of signals.
const (
	KindValue    Kind = iota // one number
	KindPanel                // components
	KindWaveform             // samples at a fixed period
)

// Signal describes one signal telemed knows.
type Signal struct {
	Code    string
	System  string // SystemLOINC or SystemMDC
	Display string // the code's display name, as exported
	Name    string // short, for people: "SpO2"
	Kind    Kind
	Unit    string // UCUM code of the value, component values or samples
	// UnitDisplay is how the unit is shown to people ("mmHg", "°C").
	UnitDisplay string
	// Min and Max are the physiologically possible values (for a waveform, of each sample): a reading
	// outside them is a device or transcription fault, not a patient.
	Min, Max float64
	// Components of a panel, in order.
	Components []Signal
	// Profile is the FHIR vital-signs profile of the exported Observation; "" if none applies.
	Profile string
	// Default is the alert threshold a new patient starts with; either bound may be absent.
	Default Threshold
}

// Threshold is the range of a signal (or of a panel's component) outside which a reading raises an
// alert. A nil bound is not checked.
type Threshold struct {
	Low  *float64 `json:"low"`
	High *float64 `json:"high"`
}

// Crossed reports whether v is outside the threshold, and which bound it crossed ("low" or "high").
func (t Threshold) Crossed(v float64) (string, bool) {
	switch {
	case t.Low != nil && v < *t.Low:
		return "low", true
	case t.High != nil && v > *t.High:
		return "high", true
	}
	return "", false
}

// Limits of a waveform reading.
const (
	MinPeriodMS = 1.0   // 1000 Hz
	MaxPeriodMS = 100.0 // 10 Hz
	MaxSamples  = 5000
)

// MaxDeviceName is the longest Reading.Device, in characters.
const MaxDeviceName = 80

// MaxFutureSkew is how far ahead of the server's clock a reading may be: further means a wrong clock.
const MaxFutureSkew = 5 * time.Minute

var catalog = []Signal{
	{Code: HeartRate, System: SystemLOINC, Display: "Heart rate", Name: "Pulse", Kind: KindValue,
		Unit: "/min", UnitDisplay: "/min", Min: 20, Max: 300,
		Profile: "http://hl7.org/fhir/StructureDefinition/heartrate",
		Default: Threshold{Low: Float(50), High: Float(120)}},
	{Code: OxygenSaturation, System: SystemLOINC, Display: "Oxygen saturation in Arterial blood", Name: "SpO2",
		Kind: KindValue, Unit: "%", UnitDisplay: "%", Min: 50, Max: 100,
		Profile: "http://hl7.org/fhir/StructureDefinition/oxygensat",
		Default: Threshold{Low: Float(92)}},
	{Code: BloodPressure, System: SystemLOINC, Display: "Blood pressure panel with all children optional", Name: "Blood pressure",
		Kind: KindPanel, Unit: "mm[Hg]", UnitDisplay: "mmHg",
		Profile: "http://hl7.org/fhir/StructureDefinition/bp",
		Components: []Signal{
			{Code: Systolic, System: SystemLOINC, Display: "Systolic blood pressure", Name: "Systolic", Kind: KindValue,
				Unit: "mm[Hg]", UnitDisplay: "mmHg", Min: 40, Max: 300, Default: Threshold{Low: Float(90), High: Float(160)}},
			{Code: Diastolic, System: SystemLOINC, Display: "Diastolic blood pressure", Name: "Diastolic", Kind: KindValue,
				Unit: "mm[Hg]", UnitDisplay: "mmHg", Min: 20, Max: 200, Default: Threshold{Low: Float(50), High: Float(100)}},
		}},
	{Code: BodyTemperature, System: SystemLOINC, Display: "Body temperature", Name: "Temperature", Kind: KindValue,
		Unit: "Cel", UnitDisplay: "°C", Min: 25, Max: 45,
		Profile: "http://hl7.org/fhir/StructureDefinition/bodytemp",
		Default: Threshold{Low: Float(35), High: Float(38)}},
	{Code: RespiratoryRate, System: SystemLOINC, Display: "Respiratory rate", Name: "Respiration", Kind: KindValue,
		Unit: "/min", UnitDisplay: "/min", Min: 2, Max: 80,
		Profile: "http://hl7.org/fhir/StructureDefinition/resprate",
		Default: Threshold{Low: Float(8), High: Float(24)}},
	{Code: ECG, System: SystemMDC, Display: "MDC_ECG_ELEC_POTL_I", Name: "ECG", Kind: KindWaveform,
		Unit: "mV", UnitDisplay: "mV", Min: -10, Max: 10},
}

// Signals returns every signal telemed knows, in display order.
func Signals() []Signal { return append([]Signal(nil), catalog...) }

// Lookup returns the signal of a code (a panel component's code finds the component). PulseOximetry
// finds OxygenSaturation.
func Lookup(code string) (Signal, bool) {
	if code == PulseOximetry {
		code = OxygenSaturation
	}
	for _, s := range catalog {
		if s.Code == code {
			return s, true
		}
		for _, c := range s.Components {
			if c.Code == code {
				return c, true
			}
		}
	}
	return Signal{}, false
}

// ThresholdCodes lists the codes a threshold can be set for: every single-valued signal and every
// panel component.
func ThresholdCodes() []string {
	var out []string
	for _, s := range catalog {
		switch s.Kind {
		case KindValue:
			out = append(out, s.Code)
		case KindPanel:
			for _, c := range s.Components {
				out = append(out, c.Code)
			}
		}
	}
	return out
}

// Error is why a reading was refused. Code is for programs (one of errcode.Rejection); Message
// names the reading for people.
type Error struct {
	Code    errcode.Code
	Message string
}

func (e *Error) Error() string { return e.Message }

func refuse(code errcode.Code, format string, args ...any) error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Validate checks a reading against the catalog at now (the receiver's clock), and returns it in its
// canonical form: PulseOximetry becomes OxygenSaturation, the time UTC to the millisecond (what is
// stored), components in catalog order.
// Its errors are *Error and name the reading by its code and signal, not by its position; callers
// that have a position add it.
func Validate(r Reading, now time.Time) (Reading, error) {
	if r.Code == "" {
		return r, refuse(errcode.BadReading, "code is missing: a reading needs the LOINC or MDC code of what it measures (docs/monitoring.md lists them)")
	}
	if r.Code == PulseOximetry {
		r.Code = OxygenSaturation
	}
	s, ok := Lookup(r.Code)
	if !ok || (s.Kind == KindValue && isComponent(r.Code)) {
		return r, refuse(errcode.UnknownCode, "code %s is not a signal telemed knows (known: %s)", errcode.Quote(r.Code), strings.Join(knownCodes(), ", "))
	}
	what := s.Code + " " + strings.ToLower(s.Display)
	r, err := checkTimeAndDevice(what, r, now)
	if err != nil {
		return r, err
	}
	switch s.Kind {
	case KindValue:
		if len(r.Components) > 0 || len(r.Samples) > 0 {
			return r, refuse(errcode.BadReading, "%s: has one value; send value and unit, no components or samples", what)
		}
		return r, checkValue(what, s, r.Value, r.Unit)
	case KindPanel:
		return checkPanel(what, s, r)
	case KindWaveform:
		return r, checkWaveform(what, s, r)
	}
	return r, nil
}

// checkTimeAndDevice checks when a reading was measured and the name of what measured it, and
// returns it with both canonical.
func checkTimeAndDevice(what string, r Reading, now time.Time) (Reading, error) {
	// The year is judged in UTC, as the time is kept: 2000-01-01T00:00+01:00 is still 1999.
	if r.Time.IsZero() || r.Time.UTC().Year() < 2000 {
		return r, refuse(errcode.BadReading, "%s: time is missing or before 2000; send when it was measured, in RFC 3339", what)
	}
	if r.Time.After(now.Add(MaxFutureSkew)) {
		return r, refuse(errcode.OutOfRange, "%s: time %s is in the future by the server's clock (is the device's clock right?)",
			what, r.Time.UTC().Format(time.RFC3339))
	}
	r.Time = r.Time.UTC().Truncate(time.Millisecond)
	r.Device = strings.TrimSpace(r.Device)
	if n := utf8.RuneCountInString(r.Device); n > MaxDeviceName || !utf8.ValidString(r.Device) ||
		strings.IndexFunc(r.Device, unicode.IsControl) >= 0 {
		return r, refuse(errcode.BadReading, "%s: device must be a name of at most %d characters without control characters", what, MaxDeviceName)
	}
	return r, nil
}

// checkPanel checks a panel's components and returns the reading with them in the catalog's order.
func checkPanel(what string, s Signal, r Reading) (Reading, error) {
	if r.Value != nil || len(r.Samples) > 0 {
		return r, refuse(errcode.BadReading, "%s: is a panel; send its components, not a value", what)
	}
	var out []Component
	for _, cs := range s.Components {
		var found *Component
		for i := range r.Components {
			if r.Components[i].Code == cs.Code {
				if found != nil {
					return r, refuse(errcode.BadReading, "%s: component %s appears twice", what, cs.Code)
				}
				found = &r.Components[i]
			}
		}
		if found == nil {
			return r, refuse(errcode.BadReading, "%s: component %s (%s) is missing", what, cs.Code, strings.ToLower(cs.Display))
		}
		if err := checkValue(what+" component "+cs.Code, cs, found.Value, found.Unit); err != nil {
			return r, err
		}
		out = append(out, *found)
	}
	if len(r.Components) != len(out) {
		for _, c := range r.Components {
			if _, ok := componentOf(s, c.Code); !ok {
				return r, refuse(errcode.UnknownCode, "%s: component %s is not part of this panel (its components: %s, %s)",
					what, errcode.Quote(c.Code), s.Components[0].Code, s.Components[1].Code)
			}
		}
	}
	if r.Code == BloodPressure && *out[0].Value <= *out[1].Value {
		return r, refuse(errcode.OutOfRange, "%s: systolic %g must be above diastolic %g", what, *out[0].Value, *out[1].Value)
	}
	r.Components = out
	r.Unit = ""
	return r, nil
}

// checkWaveform checks a waveform's unit, samples and sampling period.
func checkWaveform(what string, s Signal, r Reading) error {
	if r.Value != nil || len(r.Components) > 0 {
		return refuse(errcode.BadReading, "%s: is a waveform; send samples and period_ms, not a value", what)
	}
	if r.Unit != s.Unit {
		return refuse(errcode.BadUnit, "%s: unit must be %q, not %s", what, s.Unit, errcode.Quote(r.Unit))
	}
	if len(r.Samples) == 0 || len(r.Samples) > MaxSamples {
		return refuse(errcode.BadReading, "%s: needs 1 to %d samples, has %d", what, MaxSamples, len(r.Samples))
	}
	if !(r.PeriodMS >= MinPeriodMS && r.PeriodMS <= MaxPeriodMS) {
		return refuse(errcode.BadReading, "%s: period_ms must be between %g and %g, not %g", what, MinPeriodMS, MaxPeriodMS, r.PeriodMS)
	}
	for i, v := range r.Samples {
		if math.IsNaN(v) || v < s.Min || v > s.Max {
			return refuse(errcode.OutOfRange, "%s: sample %d is %g %s, outside the possible %g to %g", what, i, v, s.Unit, s.Min, s.Max)
		}
	}
	return nil
}

func checkValue(what string, s Signal, v *float64, unit string) error {
	if v == nil {
		return refuse(errcode.BadReading, "%s: value is missing", what)
	}
	if unit != s.Unit {
		return refuse(errcode.BadUnit, "%s: unit must be %q (UCUM), not %s", what, s.Unit, errcode.Quote(unit))
	}
	if math.IsNaN(*v) || math.IsInf(*v, 0) || *v < s.Min || *v > s.Max {
		return refuse(errcode.OutOfRange, "%s: %g %s is not physiologically possible (possible: %g to %g)", what, *v, s.UnitDisplay, s.Min, s.Max)
	}
	return nil
}

func isComponent(code string) bool {
	for _, s := range catalog {
		if _, ok := componentOf(s, code); ok {
			return true
		}
	}
	return false
}

func componentOf(s Signal, code string) (Signal, bool) {
	for _, c := range s.Components {
		if c.Code == code {
			return c, true
		}
	}
	return Signal{}, false
}

func knownCodes() []string {
	out := make([]string, 0, len(catalog))
	for _, s := range catalog {
		out = append(out, s.Code)
	}
	return out
}
