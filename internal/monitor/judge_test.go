package monitor

import (
	"maps"
	"testing"
	"time"

	"github.com/telemed/telemed/vitals"
)

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
