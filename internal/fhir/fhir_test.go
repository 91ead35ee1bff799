package fhir

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/telemed/telemed/internal/fhir/fhirschema"

	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/monitor"
	"github.com/telemed/telemed/vitals"
)

var (
	measured = time.Date(2026, 11, 24, 10, 0, 0, 250_000_000, time.UTC)
	received = time.Date(2026, 11, 24, 10, 0, 1, 0, time.UTC)
)

// readingOf returns a plausible canonical reading of a signal, as vitals.Validate would store it.
func readingOf(t testing.TB, s vitals.Signal) vitals.Reading {
	t.Helper()
	r := vitals.Reading{Code: s.Code, Time: measured}
	values := map[string]float64{vitals.HeartRate: 72, vitals.OxygenSaturation: 97, vitals.BodyTemperature: 36.8,
		vitals.RespiratoryRate: 16, vitals.Systolic: 128, vitals.Diastolic: 82}
	switch s.Kind {
	case vitals.KindValue:
		r.Value, r.Unit = vitals.Float(values[s.Code]), s.Unit
	case vitals.KindPanel:
		for _, c := range s.Components {
			r.Components = append(r.Components, vitals.Component{Code: c.Code, Value: vitals.Float(values[c.Code]), Unit: c.Unit})
		}
	case vitals.KindWaveform:
		r.Unit, r.PeriodMS, r.Samples = s.Unit, 4, []float64{0.01, 0.02, 0.9, -0.2}
	}
	canon, err := vitals.Validate(r, received)
	if err != nil {
		t.Fatalf("fixture reading of %s is not valid: %v", s.Code, err)
	}
	return canon
}

func observationOf(t testing.TB, s vitals.Signal) monitor.Observation {
	return monitor.Observation{ID: "o-" + strings.ReplaceAll(s.Code, "-", ""), PatientID: "p-0a1b2c", DeviceID: "d-1",
		Reading: readingOf(t, s), ReceivedAt: received}
}

// asMap marshals v and reads it back as generic JSON, to test the exact JSON form.
func asMap(t testing.TB, v any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %T: %v", v, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
	return m
}

func wantJSON(t *testing.T, what string, got any, want string) {
	t.Helper()
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: bad want JSON: %v", what, err)
	}
	gb, _ := json.Marshal(got)
	var g any
	_ = json.Unmarshal(gb, &g)
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %s\nwant %s", what, gb, want)
	}
}

func TestObservationHeartRate(t *testing.T) {
	s, _ := vitals.Lookup(vitals.HeartRate)
	o := NewObservation(observationOf(t, s), "Pulse oximeter")
	wantJSON(t, "heart rate", o, `{
		"resourceType": "Observation", "id": "o-88674",
		"meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/heartrate", "http://hl7.org/fhir/StructureDefinition/vitalsigns"]},
		"status": "final",
		"category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs", "display": "Vital Signs"}]}],
		"code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}], "text": "Pulse"},
		"subject": {"reference": "Patient/p-0a1b2c"},
		"effectiveDateTime": "2026-11-24T10:00:00.250Z",
		"issued": "2026-11-24T10:00:01Z",
		"device": {"display": "Pulse oximeter"},
		"valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}`)
}

func TestObservationOxygenSaturationHasBothCodes(t *testing.T) {
	// A reading sent as 59408-5 is stored as 2708-6 and exported with both codes.
	s, _ := vitals.Lookup(vitals.PulseOximetry)
	mo := observationOf(t, s)
	if mo.Reading.Code != vitals.OxygenSaturation {
		t.Fatalf("stored code %s", mo.Reading.Code)
	}
	o := NewObservation(mo, "")
	wantJSON(t, "SpO2 code", o.Code, `{"coding": [
		{"system": "http://loinc.org", "code": "2708-6", "display": "Oxygen saturation in Arterial blood"},
		{"system": "http://loinc.org", "code": "59408-5", "display": "Oxygen saturation in Arterial blood by Pulse oximetry"}],
		"text": "SpO2"}`)
	wantJSON(t, "SpO2 value", o.ValueQuantity, `{"value": 97, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}`)
	wantJSON(t, "SpO2 profile", o.Meta.Profile, `["http://hl7.org/fhir/StructureDefinition/oxygensat", "http://hl7.org/fhir/StructureDefinition/vitalsigns"]`)
	if o.Device != nil {
		t.Errorf("device %+v, want none: no device name", o.Device)
	}
}

func TestObservationBloodPressurePanel(t *testing.T) {
	s, _ := vitals.Lookup(vitals.BloodPressure)
	o := NewObservation(observationOf(t, s), "")
	m := asMap(t, o)
	if _, ok := m["valueQuantity"]; ok {
		t.Errorf("a panel has a valueQuantity: %v", m["valueQuantity"])
	}
	wantJSON(t, "BP code", o.Code, `{"coding": [{"system": "http://loinc.org", "code": "85354-9",
		"display": "Blood pressure panel with all children optional"}], "text": "Blood pressure"}`)
	wantJSON(t, "BP components", o.Component, `[
		{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6", "display": "Systolic blood pressure"}], "text": "Systolic"},
		 "valueQuantity": {"value": 128, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
		{"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4", "display": "Diastolic blood pressure"}], "text": "Diastolic"},
		 "valueQuantity": {"value": 82, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}]`)
	wantJSON(t, "BP profile", o.Meta.Profile, `["http://hl7.org/fhir/StructureDefinition/bp", "http://hl7.org/fhir/StructureDefinition/vitalsigns"]`)
}

func TestObservationTemperatureUnit(t *testing.T) {
	s, _ := vitals.Lookup(vitals.BodyTemperature)
	o := NewObservation(observationOf(t, s), "")
	wantJSON(t, "temperature", o.ValueQuantity, `{"value": 36.8, "unit": "°C", "system": "http://unitsofmeasure.org", "code": "Cel"}`)
	s, _ = vitals.Lookup(vitals.RespiratoryRate)
	o = NewObservation(observationOf(t, s), "")
	wantJSON(t, "respiration", o.ValueQuantity, `{"value": 16, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}`)
	wantJSON(t, "respiration profile", o.Meta.Profile, `["http://hl7.org/fhir/StructureDefinition/resprate", "http://hl7.org/fhir/StructureDefinition/vitalsigns"]`)
}

func TestObservationECG(t *testing.T) {
	s, _ := vitals.Lookup(vitals.ECG)
	mo := observationOf(t, s)
	mo.Reading.Samples = []float64{0.01, 0.02, 0.9, -0.2, 0.00004, -0.00006, 1.23456, 0, -1.5, 10}
	mo.Reading.Device = "Polar H10"
	o := NewObservation(mo, "Chest strap")
	wantJSON(t, "ECG", o, `{
		"resourceType": "Observation", "id": "o-131329", "status": "final",
		"category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "procedure", "display": "Procedure"}]}],
		"code": {"coding": [{"system": "urn:oid:2.16.840.1.113883.6.24", "code": "131329", "display": "MDC_ECG_ELEC_POTL_I"}], "text": "ECG"},
		"subject": {"reference": "Patient/p-0a1b2c"},
		"effectiveDateTime": "2026-11-24T10:00:00.250Z",
		"issued": "2026-11-24T10:00:01Z",
		"device": {"display": "Chest strap (Polar H10)"},
		"valueSampledData": {
			"origin": {"value": 0, "unit": "mV", "system": "http://unitsofmeasure.org", "code": "mV"},
			"period": 4, "dimensions": 1,
			"data": "0.01 0.02 0.9 -0.2 0 -0.0001 1.2346 0 -1.5 10"}}`)
}

func TestObservationUnknownCodeIsStillExported(t *testing.T) {
	o := NewObservation(monitor.Observation{ID: "o-1", PatientID: "p-1",
		Reading: vitals.Reading{Code: "1234-5", Time: measured, Value: vitals.Float(3), Unit: "mg"}}, "")
	wantJSON(t, "unknown code", o, `{"resourceType": "Observation", "id": "o-1", "status": "final",
		"code": {"coding": [{"code": "1234-5"}], "text": "1234-5"},
		"subject": {"reference": "Patient/p-1"}, "effectiveDateTime": "2026-11-24T10:00:00.250Z",
		"valueQuantity": {"value": 3, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}}`)
}

func TestInstant(t *testing.T) {
	for in, want := range map[time.Time]string{
		time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC):                 "2026-01-02T03:04:05Z",
		time.Date(2026, 1, 2, 3, 4, 5, 120_000_000, time.UTC):       "2026-01-02T03:04:05.120Z",
		time.Date(2026, 1, 2, 3, 4, 5, 999_999, time.UTC):           "2026-01-02T03:04:05Z", // under a millisecond
		time.Date(2026, 1, 2, 4, 4, 5, 0, time.FixedZone("", 3600)): "2026-01-02T03:04:05Z",
	} {
		if got := instant(in); got != want {
			t.Errorf("instant(%v) = %s, want %s", in, got, want)
		}
	}
}

func TestPatient(t *testing.T) {
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	wantJSON(t, "with birth date", NewPatient(consult.Patient{ID: "p-1", ProviderID: "u-1", Name: "Ada Lovelace", BirthDate: "1950-03-01", CreatedAt: created}),
		`{"resourceType": "Patient", "id": "p-1", "name": [{"text": "Ada Lovelace"}], "birthDate": "1950-03-01"}`)
	wantJSON(t, "without birth date", NewPatient(consult.Patient{ID: "p-2", Name: " Bo ", CreatedAt: created}),
		`{"resourceType": "Patient", "id": "p-2", "name": [{"text": "Bo"}]}`)
	wantJSON(t, "without name", NewPatient(consult.Patient{ID: "p-3"}), `{"resourceType": "Patient", "id": "p-3"}`)
}

func TestSearchSetPaging(t *testing.T) {
	q := ObservationSearch{Patient: "p-1", Codes: []string{"8867-4"}, Count: 2, Offset: 2,
		From: time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)}
	s, _ := vitals.Lookup(vitals.HeartRate)
	page := []Observation{NewObservation(observationOf(t, s), ""), NewObservation(observationOf(t, s), "")}
	b := NewSearchSet("https://tm.example/", q, 5, page, received)
	wantJSON(t, "links", b.Link, `[
		{"relation": "self", "url": "https://tm.example/fhir/r4/Observation?patient=p-1&code=8867-4&date=ge2026-11-24T00:00:00Z&_count=2&_offset=2"},
		{"relation": "next", "url": "https://tm.example/fhir/r4/Observation?patient=p-1&code=8867-4&date=ge2026-11-24T00:00:00Z&_count=2&_offset=4"}]`)
	if *b.Total != 5 || len(b.Entry) != 2 || b.Entry[0].FullURL != "https://tm.example/fhir/r4/Observation/o-88674" ||
		b.Entry[0].Search.Mode != "match" || b.Timestamp != "2026-11-24T10:00:01Z" {
		t.Errorf("bundle %+v", b)
	}
	// The last page has no next link; neither has a _count=0 (total only) search.
	if b := NewSearchSet("https://tm.example", ObservationSearch{Patient: "p-1", Count: 2, Offset: 4}, 5, page[:1], received); len(b.Link) != 1 {
		t.Errorf("last page links %+v", b.Link)
	}
	if b := NewSearchSet("https://tm.example", ObservationSearch{Patient: "p-1", Count: 0}, 5, nil, received); len(b.Link) != 1 || b.Entry != nil {
		t.Errorf("_count=0 page %+v", b)
	}
	// An empty result still says its total: 0.
	m := asMap(t, NewSearchSet("https://tm.example", ObservationSearch{Patient: "p-1", Count: 100}, 0, nil, received))
	if m["total"] != 0.0 || m["entry"] != nil || m["resourceType"] != "Bundle" {
		t.Errorf("empty bundle %v", m)
	}
}

func TestCapabilityStatement(t *testing.T) {
	c := NewCapabilityStatement("https://tm.example/", "1.2.3", received)
	m := asMap(t, c)
	for k, want := range map[string]any{"resourceType": "CapabilityStatement", "status": "active", "kind": "instance",
		"fhirVersion": "4.0.1", "date": "2026-11-24T10:00:01Z"} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
	if c.Implementation.URL != "https://tm.example/fhir/r4" || c.Software.Name != "telemed" || c.Software.Version != "1.2.3" {
		t.Errorf("implementation %+v software %+v", c.Implementation, c.Software)
	}
	obs := c.Rest[0].Resource[1]
	var params []string
	for _, p := range obs.SearchParam {
		params = append(params, p.Name+":"+p.Type)
	}
	if got := strings.Join(params, " "); got != "patient:reference code:token date:date _count:number _offset:number" {
		t.Errorf("search params %s", got)
	}
	if !strings.Contains(c.Rest[0].Security.Description, "Bearer tm_") {
		t.Errorf("security %q", c.Rest[0].Security.Description)
	}
	if c := NewCapabilityStatement("https://tm.example", "", received); c.Software.Version != "" {
		t.Errorf("version %q", c.Software.Version)
	}
}

func TestOperationOutcome(t *testing.T) {
	wantJSON(t, "outcome", NewOperationOutcome(IssueNotFound, "no Patient p-9 "),
		`{"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found", "diagnostics": "no Patient p-9"}]}`)
	wantJSON(t, "outcome without code", NewOperationOutcome("", ""),
		`{"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]}`)
}

func day(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

func TestParseObservationSearch(t *testing.T) {
	at := func(h, m, s, ns int) time.Time { return time.Date(2026, 11, 24, h, m, s, ns, time.UTC) }
	base := ObservationSearch{Patient: "p-1", Count: DefaultCount}
	with := func(f func(*ObservationSearch)) ObservationSearch { s := base; f(&s); return s }
	for _, tc := range []struct {
		query string
		want  ObservationSearch
	}{
		{"patient=p-1", base},
		{"patient=Patient/p-1&_format=json", base},
		{"patient=p_legacy", with(func(s *ObservationSearch) { s.Patient = "p_legacy" })},
		{"patient=p-1&code=8867-4", with(func(s *ObservationSearch) { s.Codes = []string{"8867-4"} })},
		{"patient=p-1&code=http://loinc.org|8867-4", with(func(s *ObservationSearch) { s.Codes = []string{"8867-4"} })},
		{"patient=p-1&code=urn:oid:2.16.840.1.113883.6.24|131329", with(func(s *ObservationSearch) { s.Codes = []string{"131329"} })},
		{"patient=p-1&code=59408-5", with(func(s *ObservationSearch) { s.Codes = []string{"2708-6"} })},
		{"patient=p-1&code=2708-6,http://loinc.org|59408-5,85354-9", with(func(s *ObservationSearch) { s.Codes = []string{"2708-6", "85354-9"} })},
		{"patient=p-1&date=2026-11-24", with(func(s *ObservationSearch) { s.From, s.To = day(2026, 11, 24), day(2026, 11, 25) })},
		{"patient=p-1&date=eq2026-11-24", with(func(s *ObservationSearch) { s.From, s.To = day(2026, 11, 24), day(2026, 11, 25) })},
		{"patient=p-1&date=ge2026-11-24&date=le2026-11-24", with(func(s *ObservationSearch) { s.From, s.To = day(2026, 11, 24), day(2026, 11, 25) })},
		{"patient=p-1&date=gt2026-11-24", with(func(s *ObservationSearch) { s.From = day(2026, 11, 25) })},
		{"patient=p-1&date=lt2026-11", with(func(s *ObservationSearch) { s.To = day(2026, 11, 1) })},
		{"patient=p-1&date=le2026-12", with(func(s *ObservationSearch) { s.To = day(2027, 1, 1) })},
		{"patient=p-1&date=2026", with(func(s *ObservationSearch) { s.From, s.To = day(2026, 1, 1), day(2027, 1, 1) })},
		{"patient=p-1&date=2028-02-29", with(func(s *ObservationSearch) { s.From, s.To = day(2028, 2, 29), day(2028, 3, 1) })},
		{"patient=p-1&date=ge2026-11-24T10:00:00%2B01:00", with(func(s *ObservationSearch) { s.From = at(9, 0, 0, 0) })},
		{"patient=p-1&date=ge2026-11-24T10:00:00+01:00", with(func(s *ObservationSearch) { s.From = at(9, 0, 0, 0) })}, // "+" unencoded
		{"patient=p-1&date=ge2026-11-24T10:00:00-05:30", with(func(s *ObservationSearch) { s.From = at(15, 30, 0, 0) })},
		{"patient=p-1&date=le2026-11-24T10:00:00.25Z", with(func(s *ObservationSearch) { s.To = at(10, 0, 0, 260_000_000) })},
		{"patient=p-1&date=gt2026-11-24T10:00:00Z", with(func(s *ObservationSearch) { s.From = at(10, 0, 1, 0) })},
		{"patient=p-1&date=2026-11-24T10:00Z", with(func(s *ObservationSearch) { s.From, s.To = at(10, 0, 0, 0), at(10, 1, 0, 0) })},
		{"patient=p-1&date=ge2026-11-01&date=ge2026-11-20&date=lt2026-12-01&date=lt2026-11-25",
			with(func(s *ObservationSearch) { s.From, s.To = day(2026, 11, 20), day(2026, 11, 25) })},
		{"patient=p-1&_count=5&_offset=200", with(func(s *ObservationSearch) { s.Count, s.Offset = 5, 200 })},
		{"patient=p-1&_count=5000", with(func(s *ObservationSearch) { s.Count = MaxCount })},
		{"patient=p-1&_count=0", with(func(s *ObservationSearch) { s.Count = 0 })},
	} {
		q, err := url.ParseQuery(tc.query)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseObservationSearch(q)
		if err != nil {
			t.Errorf("%s: %v", tc.query, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.query, got, tc.want)
		}
		// The canonical form, as the paging links carry it, parses back to the same search.
		canon, err := url.ParseQuery(got.Query())
		if err != nil {
			t.Fatalf("%s: canonical %s: %v", tc.query, got.Query(), err)
		}
		if again, err := ParseObservationSearch(canon); err != nil || !reflect.DeepEqual(again, got) {
			t.Errorf("%s: canonical %s parses to %+v, %v", tc.query, got.Query(), again, err)
		}
	}
}

func TestQueryIsReadable(t *testing.T) {
	q := ObservationSearch{Patient: "p-1", Codes: []string{"2708-6", "85354-9"}, From: day(2026, 11, 24),
		To: time.Date(2026, 11, 25, 0, 0, 0, 500_000_000, time.UTC), Count: 50, Offset: 100}
	want := "patient=p-1&code=2708-6,85354-9&date=ge2026-11-24T00:00:00Z&date=lt2026-11-25T00:00:00.5Z&_count=50&_offset=100"
	if got := q.Query(); got != want {
		t.Errorf("Query() = %s, want %s", got, want)
	}
}

func TestParseObservationSearchErrors(t *testing.T) {
	for _, tc := range []struct {
		query string
		param string // the parameter the error must name
		issue string
		says  string // a part of the message
	}{
		{"", "patient", IssueInvalid, "is required"},
		{"code=8867-4", "patient", IssueInvalid, "is required"},
		{"patient=", "patient", IssueInvalid, "is empty"},
		{"patient=Practitioner/x", "patient", IssueInvalid, `"Practitioner/x"`},
		{"patient=p-1&patient=p-2", "patient", IssueInvalid, "more than once"},
		{"patient=p-1&subject=Patient/p-1", "subject", IssueNotSupported, "supports: patient, code, date"},
		{"patient=p-1&code:text=pulse", "code:text", IssueNotSupported, "not supported"},
		{"patient=p-1&_sort=date", "_sort", IssueNotSupported, "not supported"},
		{"patient=p-1&code=1234-5", "code", IssueInvalid, `"1234-5" is not a signal`},
		{"patient=p-1&code=8867-4,", "code", IssueInvalid, "empty code"},
		{"patient=p-1&code=http://snomed.info/sct|8867-4", "code", IssueInvalid, `"http://snomed.info/sct" is not one`},
		{"patient=p-1&code=|8867-4", "code", IssueInvalid, "is not one telemed uses"},
		{"patient=p-1&code=http://loinc.org|131329", "code", IssueInvalid, "is not a code of http://loinc.org"},
		{"patient=p-1&code=8480-6", "code", IssueInvalid, "search code=85354-9"},
		{"patient=p-1&code=8867-4&code=2708-6", "code", IssueInvalid, "separated by commas"},
		{"patient=p-1&date=yesterday", "date", IssueInvalid, "is not a FHIR date"},
		{"patient=p-1&date=2026-13-01", "date", IssueInvalid, "not a valid date"},
		{"patient=p-1&date=2026-02-30", "date", IssueInvalid, "not a valid date"},
		{"patient=p-1&date=2026-11-24T25:00:00Z", "date", IssueInvalid, "not a valid"},
		{"patient=p-1&date=2026-11-24T10:00:00", "date", IssueInvalid, "no time zone"},
		{"patient=p-1&date=2026-11-24T10:00:00%2B15:00", "date", IssueInvalid, "offset out of range"},
		{"patient=p-1&date=ne2026-11-24", "date", IssueNotSupported, "prefix ne"},
		{"patient=p-1&date=xx2026-11-24", "date", IssueInvalid, `prefix "xx"`},
		{"patient=p-1&date=ge2026-11-25&date=le2026-11-24", "date", IssueInvalid, "no time between"},
		{"patient=p-1&date=", "date", IssueInvalid, "is not a FHIR date"},
		{"patient=p-1&_count=-1", "_count", IssueInvalid, "whole number"},
		{"patient=p-1&_count=ten", "_count", IssueInvalid, `"ten"`},
		{"patient=p-1&_offset=-5", "_offset", IssueInvalid, "whole number"},
		{"patient=p-1&_offset=1&_offset=2", "_offset", IssueInvalid, "more than once"},
	} {
		q, err := url.ParseQuery(tc.query)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ParseObservationSearch(q)
		var pe *ParamError
		if !errors.As(err, &pe) {
			t.Errorf("%q: error %v, want a *ParamError", tc.query, err)
			continue
		}
		msg := err.Error()
		if pe.Param != tc.param || pe.Issue != tc.issue || !strings.Contains(msg, tc.says) ||
			!strings.HasPrefix(msg, "search parameter "+tc.param) {
			t.Errorf("%q: got param %q issue %q: %s\nwant param %q issue %q, saying %q", tc.query, pe.Param, pe.Issue, msg, tc.param, tc.issue, tc.says)
		}
		if out := pe.OperationOutcome(); out.Issue[0].Code != tc.issue || out.Issue[0].Diagnostics != msg {
			t.Errorf("%q: outcome %+v", tc.query, out)
		}
	}
}

// validate checks a resource's JSON against the FHIR R4 schema.
func validate(t *testing.T, v any) error {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %T: %v", v, err)
	}
	return fhirschema.Validate(b)
}

// emitted returns every kind of resource the package emits, by name.
func emitted(t *testing.T) map[string]Resource {
	out := map[string]Resource{}
	var page []Observation
	for _, s := range vitals.Signals() {
		o := NewObservation(observationOf(t, s), "Home kit")
		out["Observation "+s.Code] = o
		page = append(page, o)
	}
	out["Observation without device or issued"] = NewObservation(monitor.Observation{ID: "o-2", PatientID: "p-1",
		Reading: readingOf(t, vitals.Signals()[0])}, "")
	out["Observation of an unknown code"] = NewObservation(monitor.Observation{ID: "o-3", PatientID: "p-1",
		Reading: vitals.Reading{Code: "1234-5", Time: measured, Value: vitals.Float(3), Unit: "mg"}}, "")
	out["Patient"] = NewPatient(consult.Patient{ID: "p-1", Name: "Ada Lovelace", BirthDate: "1950-03-01"})
	out["Patient without birth date"] = NewPatient(consult.Patient{ID: "p-2", Name: "Bo"})
	q := ObservationSearch{Patient: "p-1", Codes: []string{"8867-4", "131329"}, From: day(2026, 11, 24), To: day(2026, 11, 25), Count: 3}
	out["Bundle with next link"] = NewSearchSet("https://tm.example", q, 10, page[:3], received)
	out["Bundle, last page"] = NewSearchSet("https://tm.example", ObservationSearch{Patient: "p-1", Count: 100}, len(page), page, received)
	out["Bundle, empty"] = NewSearchSet("https://tm.example", ObservationSearch{Patient: "p-1", Count: 100}, 0, nil, received)
	out["CapabilityStatement"] = NewCapabilityStatement("https://tm.example", "0.9.0", received)
	out["CapabilityStatement without version"] = NewCapabilityStatement("http://localhost:8080", "", received)
	for _, code := range []string{IssueInvalid, IssueNotSupported, IssueSecurity, IssueForbidden, IssueNotFound, IssueTooCostly, IssueThrottled, IssueException} {
		out["OperationOutcome "+code] = NewOperationOutcome(code, "what went wrong")
	}
	_, err := ParseObservationSearch(url.Values{"patient": {"p-1"}, "date": {"2026-13"}})
	var pe *ParamError
	if !errors.As(err, &pe) {
		t.Fatalf("no ParamError: %v", err)
	}
	out["OperationOutcome of a ParamError"] = pe.OperationOutcome()
	return out
}

func TestEmittedResourcesValidateAgainstFHIRSchema(t *testing.T) {
	for name, r := range emitted(t) {
		if err := validate(t, r); err != nil {
			b, _ := json.MarshalIndent(r, "", "  ")
			t.Errorf("%s does not validate against the FHIR R4 schema:\n%v\n%s", name, err, b)
		}
		if path := firstEmpty(asMap(t, r), r.ResourceType()); path != "" {
			t.Errorf("%s has an empty value at %s; FHIR forbids empty strings, arrays and objects", name, path)
		}
	}
}

// firstEmpty returns the path of the first empty string, array or object in JSON v, or "": FHIR
// forbids them, but its JSON schema does not check it.
func firstEmpty(v any, path string) string {
	switch v := v.(type) {
	case string:
		if strings.TrimSpace(v) == "" {
			return path
		}
	case []any:
		if len(v) == 0 {
			return path
		}
		for i, e := range v {
			if p := firstEmpty(e, fmt.Sprintf("%s[%d]", path, i)); p != "" {
				return p
			}
		}
	case map[string]any:
		if len(v) == 0 {
			return path
		}
		for k, e := range v {
			if p := firstEmpty(e, path+"."+k); p != "" {
				return p
			}
		}
	}
	return ""
}

func TestFirstEmpty(t *testing.T) {
	for _, tc := range []struct {
		json, want string
	}{
		{`{"a": "x", "b": [1, {"c": true}]}`, ""},
		{`{"a": ""}`, "r.a"},
		{`{"a": [{"b": []}]}`, "r.a[0].b"},
		{`{"a": {}}`, "r.a"},
	} {
		var v any
		_ = json.Unmarshal([]byte(tc.json), &v)
		if got := firstEmpty(v, "r"); got != tc.want {
			t.Errorf("firstEmpty(%s) = %q, want %q", tc.json, got, tc.want)
		}
	}
}

// TestFHIRSchemaRejectsInvalidResources shows that the schema test can fail: resources FHIR
// forbids do not validate.
func TestFHIRSchemaRejectsInvalidResources(t *testing.T) {
	s, _ := vitals.Lookup(vitals.HeartRate)
	bogus := NewObservation(observationOf(t, s), "")
	bogus.Status = "bogus"
	badBP := NewObservation(observationOf(t, s), "")
	badBP.EffectiveDateTime = "24/11/2026"

	var emptyBirthDate map[string]any
	b, _ := json.Marshal(NewPatient(consult.Patient{ID: "p-1", Name: "Ada"}))
	_ = json.Unmarshal(b, &emptyBirthDate)
	emptyBirthDate["birthDate"] = ""

	for name, v := range map[string]any{
		"Observation with status bogus": bogus,
		"Observation with a bad date":   badBP,
		"Observation without its code":  map[string]any{"resourceType": "Observation", "status": "final"},
		"Bundle of a bogus Observation": NewSearchSet("https://tm.example", ObservationSearch{Patient: "p-1", Count: 1},
			1, []Observation{bogus}, received),
		"Patient with an empty birth date": emptyBirthDate,
		"Patient with an underscore id":    NewPatient(consult.Patient{ID: "p_1"}),
		"Patient with an unknown field":    map[string]any{"resourceType": "Patient", "nickname": "Ada"},
		"not a resource type":              map[string]any{"resourceType": "Vitals"},
		"OperationOutcome with a bad code": NewOperationOutcome("oops", "x"),
	} {
		if err := validate(t, v); err == nil {
			t.Errorf("%s validates against the FHIR R4 schema; it should not", name)
		}
	}
}

// ExampleNewSearchSet prints a page of a search, as docs/monitoring.md shows it.
func ExampleNewSearchSet() {
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	spo2 := NewObservation(monitor.Observation{ID: "o-5f2c", PatientID: "p-8d41", ReceivedAt: at.Add(time.Second),
		Reading: vitals.Reading{Code: vitals.OxygenSaturation, Time: at, Value: vitals.Float(97), Unit: "%"}}, "Pulse oximeter")
	bp := NewObservation(monitor.Observation{ID: "o-9a07", PatientID: "p-8d41", ReceivedAt: at.Add(5*time.Minute + time.Second),
		Reading: vitals.Reading{Code: vitals.BloodPressure, Time: at.Add(5 * time.Minute), Components: []vitals.Component{
			{Code: vitals.Systolic, Value: vitals.Float(128), Unit: "mm[Hg]"},
			{Code: vitals.Diastolic, Value: vitals.Float(82), Unit: "mm[Hg]"}}}}, "BP cuff")
	q, _ := ParseObservationSearch(url.Values{"patient": {"p-8d41"}, "date": {"ge2026-11-24"}, "_count": {"2"}})
	b := NewSearchSet("https://telemed.example.org", q, 3, []Observation{spo2, bp}, at.Add(time.Hour))
	out, err := MarshalIndent(b)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(out))
	// Output:
	// {
	//   "resourceType": "Bundle",
	//   "type": "searchset",
	//   "timestamp": "2026-11-24T11:00:00Z",
	//   "total": 3,
	//   "link": [
	//     {
	//       "relation": "self",
	//       "url": "https://telemed.example.org/fhir/r4/Observation?patient=p-8d41&date=ge2026-11-24T00:00:00Z&_count=2"
	//     },
	//     {
	//       "relation": "next",
	//       "url": "https://telemed.example.org/fhir/r4/Observation?patient=p-8d41&date=ge2026-11-24T00:00:00Z&_count=2&_offset=2"
	//     }
	//   ],
	//   "entry": [
	//     {
	//       "fullUrl": "https://telemed.example.org/fhir/r4/Observation/o-5f2c",
	//       "resource": {
	//         "resourceType": "Observation",
	//         "id": "o-5f2c",
	//         "meta": {
	//           "profile": [
	//             "http://hl7.org/fhir/StructureDefinition/oxygensat",
	//             "http://hl7.org/fhir/StructureDefinition/vitalsigns"
	//           ]
	//         },
	//         "status": "final",
	//         "category": [
	//           {
	//             "coding": [
	//               {
	//                 "system": "http://terminology.hl7.org/CodeSystem/observation-category",
	//                 "code": "vital-signs",
	//                 "display": "Vital Signs"
	//               }
	//             ]
	//           }
	//         ],
	//         "code": {
	//           "coding": [
	//             {
	//               "system": "http://loinc.org",
	//               "code": "2708-6",
	//               "display": "Oxygen saturation in Arterial blood"
	//             },
	//             {
	//               "system": "http://loinc.org",
	//               "code": "59408-5",
	//               "display": "Oxygen saturation in Arterial blood by Pulse oximetry"
	//             }
	//           ],
	//           "text": "SpO2"
	//         },
	//         "subject": {
	//           "reference": "Patient/p-8d41"
	//         },
	//         "effectiveDateTime": "2026-11-24T10:00:00Z",
	//         "issued": "2026-11-24T10:00:01Z",
	//         "device": {
	//           "display": "Pulse oximeter"
	//         },
	//         "valueQuantity": {
	//           "value": 97,
	//           "unit": "%",
	//           "system": "http://unitsofmeasure.org",
	//           "code": "%"
	//         }
	//       },
	//       "search": {
	//         "mode": "match"
	//       }
	//     },
	//     {
	//       "fullUrl": "https://telemed.example.org/fhir/r4/Observation/o-9a07",
	//       "resource": {
	//         "resourceType": "Observation",
	//         "id": "o-9a07",
	//         "meta": {
	//           "profile": [
	//             "http://hl7.org/fhir/StructureDefinition/bp",
	//             "http://hl7.org/fhir/StructureDefinition/vitalsigns"
	//           ]
	//         },
	//         "status": "final",
	//         "category": [
	//           {
	//             "coding": [
	//               {
	//                 "system": "http://terminology.hl7.org/CodeSystem/observation-category",
	//                 "code": "vital-signs",
	//                 "display": "Vital Signs"
	//               }
	//             ]
	//           }
	//         ],
	//         "code": {
	//           "coding": [
	//             {
	//               "system": "http://loinc.org",
	//               "code": "85354-9",
	//               "display": "Blood pressure panel with all children optional"
	//             }
	//           ],
	//           "text": "Blood pressure"
	//         },
	//         "subject": {
	//           "reference": "Patient/p-8d41"
	//         },
	//         "effectiveDateTime": "2026-11-24T10:05:00Z",
	//         "issued": "2026-11-24T10:05:01Z",
	//         "device": {
	//           "display": "BP cuff"
	//         },
	//         "component": [
	//           {
	//             "code": {
	//               "coding": [
	//                 {
	//                   "system": "http://loinc.org",
	//                   "code": "8480-6",
	//                   "display": "Systolic blood pressure"
	//                 }
	//               ],
	//               "text": "Systolic"
	//             },
	//             "valueQuantity": {
	//               "value": 128,
	//               "unit": "mmHg",
	//               "system": "http://unitsofmeasure.org",
	//               "code": "mm[Hg]"
	//             }
	//           },
	//           {
	//             "code": {
	//               "coding": [
	//                 {
	//                   "system": "http://loinc.org",
	//                   "code": "8462-4",
	//                   "display": "Diastolic blood pressure"
	//                 }
	//               ],
	//               "text": "Diastolic"
	//             },
	//             "valueQuantity": {
	//               "value": 82,
	//               "unit": "mmHg",
	//               "system": "http://unitsofmeasure.org",
	//               "code": "mm[Hg]"
	//             }
	//           }
	//         ]
	//       },
	//       "search": {
	//         "mode": "match"
	//       }
	//     }
	//   ]
	// }
}
