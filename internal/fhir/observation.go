package fhir

import (
	"strconv"
	"strings"

	"github.com/telemed/telemed/internal/monitor"
	"github.com/telemed/telemed/vitals"
)

// CategorySystem is FHIR's observation category code system: vital signs are "vital-signs", ECG
// waveforms "procedure".
const CategorySystem = "http://terminology.hl7.org/CodeSystem/observation-category"

// vitalSignsProfile is the base vital-signs profile, claimed beside each signal's own profile.
const vitalSignsProfile = "http://hl7.org/fhir/StructureDefinition/vitalsigns"

var (
	vitalSignsCategory = CodeableConcept{Coding: []Coding{{System: CategorySystem, Code: "vital-signs", Display: "Vital Signs"}}}
	procedureCategory  = CodeableConcept{Coding: []Coding{{System: CategorySystem, Code: "procedure", Display: "Procedure"}}}
)

// Observation is the FHIR form of a monitor.Observation: a vital sign (value or blood pressure
// panel) following the R4 vital-signs profiles, or an ECG waveform as SampledData.
type Observation struct {
	ID                string                 `json:"id,omitempty"`
	Meta              *Meta                  `json:"meta,omitempty"`
	Status            string                 `json:"status"`
	Category          []CodeableConcept      `json:"category,omitempty"`
	Code              CodeableConcept        `json:"code"`
	Subject           *Reference             `json:"subject,omitempty"`
	EffectiveDateTime string                 `json:"effectiveDateTime,omitempty"`
	Issued            string                 `json:"issued,omitempty"`
	Device            *Reference             `json:"device,omitempty"`
	ValueQuantity     *Quantity              `json:"valueQuantity,omitempty"`
	ValueSampledData  *SampledData           `json:"valueSampledData,omitempty"`
	Component         []ObservationComponent `json:"component,omitempty"`
}

// ResourceType returns "Observation".
func (Observation) ResourceType() string { return "Observation" }

// MarshalJSON writes the observation with its resourceType.
func (o Observation) MarshalJSON() ([]byte, error) {
	type plain Observation
	return marshalTyped(o.ResourceType(), plain(o))
}

// ObservationComponent is one value of a panel (a blood pressure's systolic or diastolic).
type ObservationComponent struct {
	Code          CodeableConcept `json:"code"`
	ValueQuantity *Quantity       `json:"valueQuantity,omitempty"`
}

// Quantity is a measured amount: Code is its UCUM unit, Unit how people write it ("°C").
type Quantity struct {
	Value  float64 `json:"value"`
	Unit   string  `json:"unit,omitempty"`
	System string  `json:"system,omitempty"`
	Code   string  `json:"code,omitempty"`
}

// SampledData is a waveform: Data holds the samples as decimals separated by spaces, one every
// Period milliseconds, each meaning Origin plus the sample in Origin's unit.
type SampledData struct {
	Origin     Quantity `json:"origin"`
	Period     float64  `json:"period"`
	Dimensions int      `json:"dimensions"`
	Data       string   `json:"data,omitempty"`
}

// NewObservation maps a stored observation. deviceName is the name of the enrolled device that sent
// it ("" if none); with the reading's own device (a model, such as "Nonin 3230") it becomes
// Observation.device's display.
//
// Stored readings are canonical (vitals.Validate), so every code is in the catalog. Were one not (a
// signal dropped from the catalog later), it is still exported, with its code and value as stored
// but no profile or category: an export should not lose data.
func NewObservation(o monitor.Observation, deviceName string) Observation {
	r := o.Reading
	out := Observation{
		ID:                o.ID,
		Status:            "final",
		EffectiveDateTime: dateTime(r.Time),
	}
	if o.PatientID != "" {
		out.Subject = &Reference{Reference: "Patient/" + o.PatientID}
	}
	if !o.ReceivedAt.IsZero() {
		out.Issued = instant(o.ReceivedAt)
	}
	if name := deviceDisplay(deviceName, r.Device); name != "" {
		out.Device = &Reference{Display: name}
	}

	s, ok := vitals.Lookup(r.Code)
	if !ok {
		out.Code = CodeableConcept{Coding: []Coding{{Code: r.Code}}, Text: r.Code}
		if r.Value != nil {
			out.ValueQuantity = &Quantity{Value: *r.Value, Unit: r.Unit, System: vitals.SystemUCUM, Code: r.Unit}
		}
		return out
	}
	out.Code = concept(s)
	if s.Profile != "" {
		out.Meta = &Meta{Profile: []string{s.Profile, vitalSignsProfile}}
		out.Category = []CodeableConcept{vitalSignsCategory}
	} else {
		out.Category = []CodeableConcept{procedureCategory}
	}
	switch s.Kind {
	case vitals.KindValue:
		if r.Value != nil {
			out.ValueQuantity = quantity(*r.Value, s)
		}
	case vitals.KindPanel:
		for _, c := range r.Components {
			comp := ObservationComponent{Code: CodeableConcept{Coding: []Coding{{Code: c.Code}}, Text: c.Code}}
			cs, known := vitals.Lookup(c.Code)
			if known {
				comp.Code = concept(cs)
			} else {
				cs = vitals.Signal{Unit: c.Unit, UnitDisplay: c.Unit}
			}
			if c.Value != nil {
				comp.ValueQuantity = quantity(*c.Value, cs)
			}
			out.Component = append(out.Component, comp)
		}
	case vitals.KindWaveform:
		out.ValueSampledData = &SampledData{
			Origin:     Quantity{Value: 0, Unit: s.UnitDisplay, System: vitals.SystemUCUM, Code: s.Unit},
			Period:     r.PeriodMS,
			Dimensions: 1,
			Data:       FormatSamples(r.Samples),
		}
	}
	return out
}

// concept is the code of a signal: its coding with display, and its short name as text. Oxygen
// saturation also carries the pulse oximetry code, as the oxygensat profile asks.
func concept(s vitals.Signal) CodeableConcept {
	c := CodeableConcept{Coding: []Coding{{System: s.System, Code: s.Code, Display: s.Display}}, Text: s.Name}
	if s.Code == vitals.OxygenSaturation {
		c.Coding = append(c.Coding, Coding{System: vitals.SystemLOINC, Code: vitals.PulseOximetry,
			Display: "Oxygen saturation in Arterial blood by Pulse oximetry"})
	}
	return c
}

func quantity(v float64, s vitals.Signal) *Quantity {
	return &Quantity{Value: v, Unit: s.UnitDisplay, System: vitals.SystemUCUM, Code: s.Unit}
}

// deviceDisplay names what measured a reading: the enrolled device's name, with the reading's device
// model in parentheses when it says more.
func deviceDisplay(enrolled, model string) string {
	enrolled, model = strings.TrimSpace(enrolled), strings.TrimSpace(model)
	switch {
	case enrolled == "":
		return model
	case model == "" || strings.EqualFold(model, enrolled):
		return enrolled
	}
	return enrolled + " (" + model + ")"
}

// FormatSamples writes waveform samples as SampledData.data: decimals separated by single spaces,
// rounded to 4 decimal places (0.1 µV for millivolts, below any ECG's resolution) and written without
// trailing zeros or an exponent: 0.0125 -1.2 0.
func FormatSamples(samples []float64) string {
	var b strings.Builder
	for i, v := range samples {
		if i > 0 {
			b.WriteByte(' ')
		}
		s := strconv.FormatFloat(v, 'f', 4, 64)
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
		if s == "-0" || s == "" {
			s = "0"
		}
		b.WriteString(s)
	}
	return b.String()
}
