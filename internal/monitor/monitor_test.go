package monitor

import (
	"testing"
	"time"

	"github.com/telemed/telemed/vitals"
)

func TestCheckRaisesOnCrossing(t *testing.T) {
	th := DefaultThresholds() // SpO2 below 92; heart rate below 50 or above 120
	states := States{}
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	obs := func(code string, v float64, unit string, s int) Observation {
		return Observation{ID: "o", PatientID: "p", Reading: vitals.Reading{Code: code, Value: vitals.Float(v), Unit: unit, Time: t0.Add(time.Duration(s) * time.Second)}}
	}
	steps := []struct {
		o    Observation
		want string // the bound of the alert raised, or ""
	}{
		{obs(vitals.OxygenSaturation, 97, "%", 0), ""},
		{obs(vitals.OxygenSaturation, 90, "%", 1), "low"}, // crosses out
		{obs(vitals.OxygenSaturation, 88, "%", 2), ""},    // stays out: no new alert
		{obs(vitals.OxygenSaturation, 95, "%", 3), ""},    // back in
		{obs(vitals.OxygenSaturation, 91, "%", 4), "low"}, // out again
		{obs(vitals.HeartRate, 130, "/min", 5), "high"},   // another signal has its own state
		{obs(vitals.HeartRate, 40, "/min", 6), "low"},     // from one bound to the other
	}
	for i, s := range steps {
		as := th.Check(s.o, states)
		got := ""
		if len(as) == 1 {
			got = as[0].Bound
		}
		if len(as) > 1 || got != s.want {
			t.Fatalf("step %d (%s %g): alerts %+v, want %q", i, s.o.Reading.Code, *s.o.Reading.Value, as, s.want)
		}
	}
	bp := Observation{Reading: vitals.Reading{Code: vitals.BloodPressure, Time: t0, Components: []vitals.Component{
		{Code: vitals.Systolic, Value: vitals.Float(170), Unit: "mm[Hg]"}, {Code: vitals.Diastolic, Value: vitals.Float(105), Unit: "mm[Hg]"}}}}
	if as := th.Check(bp, states); len(as) != 2 || as[0].Limit != 160 || as[1].Limit != 100 {
		t.Fatalf("blood pressure over both limits: %+v", as)
	}
}
