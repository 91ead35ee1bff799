package monitor

import (
	"maps"
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

func TestJudge(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	spo2 := func(id string, v float64, s int) Observation {
		return Observation{ID: id, PatientID: "p", Reading: vitals.Reading{Code: vitals.OxygenSaturation, Value: vitals.Float(v), Unit: "%", Time: t0.Add(time.Duration(s) * time.Second)}}
	}
	hr := func(id string, v float64, s int) Observation {
		return Observation{ID: id, PatientID: "p", Reading: vitals.Reading{Code: vitals.HeartRate, Value: vitals.Float(v), Unit: "/min", Time: t0.Add(time.Duration(s) * time.Second)}}
	}
	cases := []struct {
		name        string
		states      States
		obs         []Observation
		wantAlerts  []string // "observation id:bound", in order
		wantChanged States
	}{
		{"nothing out of range", States{}, []Observation{spo2("a", 97, 0), spo2("b", 96, 1)}, nil, States{vitals.OxygenSaturation: ""}},
		{"a crossing raises one alert", States{}, []Observation{spo2("a", 97, 0), spo2("b", 90, 1), spo2("c", 88, 2)},
			[]string{"b:low"}, States{vitals.OxygenSaturation: "low"}},
		{"already out before the batch: no alert", States{vitals.OxygenSaturation: "low"}, []Observation{spo2("a", 89, 0)},
			nil, States{}},
		{"judged in measured order, not arrival order", States{}, []Observation{spo2("late", 90, 5), spo2("early", 97, 0)},
			[]string{"late:low"}, States{vitals.OxygenSaturation: "low"}},
		{"measured order: out then back in", States{}, []Observation{spo2("in", 97, 5), spo2("out", 90, 0)},
			[]string{"out:low"}, States{vitals.OxygenSaturation: ""}},
		{"back in range is a change without an alert", States{vitals.OxygenSaturation: "low"}, []Observation{spo2("a", 97, 0)},
			nil, States{vitals.OxygenSaturation: ""}},
		{"one bound to the other", States{vitals.HeartRate: "high"}, []Observation{hr("a", 40, 0)},
			[]string{"a:low"}, States{vitals.HeartRate: "low"}},
		{"signals are judged apart", States{}, []Observation{hr("h", 130, 0), spo2("s", 90, 1)},
			[]string{"h:high", "s:low"}, States{vitals.HeartRate: "high", vitals.OxygenSaturation: "low"}},
		{"an empty batch changes nothing", States{vitals.HeartRate: "high"}, nil, nil, States{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			states := maps.Clone(c.states)
			alerts, changed := Judge(DefaultThresholds(), states, c.obs)
			var got []string
			for _, a := range alerts {
				got = append(got, a.ObservationID+":"+a.Bound)
			}
			if len(got) != len(c.wantAlerts) {
				t.Fatalf("alerts %v, want %v", got, c.wantAlerts)
			}
			for i := range got {
				if got[i] != c.wantAlerts[i] {
					t.Fatalf("alerts %v, want %v", got, c.wantAlerts)
				}
			}
			if !maps.Equal(changed, c.wantChanged) {
				t.Fatalf("changed %v, want %v", changed, c.wantChanged)
			}
			for code, bound := range changed {
				if states[code] != bound {
					t.Fatalf("states[%s] = %q after the batch, changed says %q", code, states[code], bound)
				}
			}
		})
	}
}
