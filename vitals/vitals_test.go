package vitals

import (
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	at := now.Add(-time.Minute).Add(123456 * time.Nanosecond)
	bp := func(sys, dia float64) []Component {
		return []Component{{Code: Systolic, Value: Float(sys), Unit: "mm[Hg]"}, {Code: Diastolic, Value: Float(dia), Unit: "mm[Hg]"}}
	}
	for _, c := range []struct {
		name    string
		r       Reading
		code    string // "" when valid
		mention string
	}{
		{"heart rate", Reading{Code: HeartRate, Value: Float(72), Unit: "/min", Time: at}, "", ""},
		{"pulse oximetry code", Reading{Code: PulseOximetry, Value: Float(97), Unit: "%", Time: at}, "", ""},
		{"blood pressure, components in any order", Reading{Code: BloodPressure, Time: at, Components: []Component{bp(120, 80)[1], bp(120, 80)[0]}}, "", ""},
		{"ECG", Reading{Code: ECG, Unit: "mV", Time: at, PeriodMS: 4, Samples: []float64{0, 1.1, -0.3}}, "", ""},
		{"no code", Reading{Value: Float(72), Unit: "/min", Time: at}, "bad_reading", "code is missing"},
		{"unknown code", Reading{Code: "1234-5", Value: Float(72), Unit: "/min", Time: at}, "unknown_code", `"1234-5"`},
		{"a component alone", Reading{Code: Systolic, Value: Float(120), Unit: "mm[Hg]", Time: at}, "unknown_code", "8480-6"},
		{"wrong unit", Reading{Code: HeartRate, Value: Float(72), Unit: "bpm", Time: at}, "bad_unit", `"/min"`},
		{"Fahrenheit", Reading{Code: BodyTemperature, Value: Float(98.6), Unit: "[degF]", Time: at}, "bad_unit", `"Cel"`},
		{"impossible value", Reading{Code: OxygenSaturation, Value: Float(101), Unit: "%", Time: at}, "out_of_range", "not physiologically possible"},
		{"no value", Reading{Code: HeartRate, Unit: "/min", Time: at}, "bad_reading", "value is missing"},
		{"no time", Reading{Code: HeartRate, Value: Float(72), Unit: "/min"}, "bad_reading", "time is missing"},
		{"1999 in UTC", Reading{Code: HeartRate, Value: Float(72), Unit: "/min", Time: time.Date(2000, 1, 1, 0, 0, 0, 0, time.FixedZone("", 3600))}, "bad_reading", "before 2000"},
		{"future", Reading{Code: HeartRate, Value: Float(72), Unit: "/min", Time: now.Add(10 * time.Minute)}, "out_of_range", "in the future"},
		{"systolic below diastolic", Reading{Code: BloodPressure, Time: at, Components: bp(70, 90)}, "out_of_range", "above diastolic"},
		{"missing component", Reading{Code: BloodPressure, Time: at, Components: bp(120, 80)[:1]}, "bad_reading", "8462-4"},
		{"extra component", Reading{Code: BloodPressure, Time: at, Components: append(bp(120, 80), Component{Code: "x", Value: Float(1), Unit: "mm[Hg]"})}, "unknown_code", `"x"`},
		{"panel with a value", Reading{Code: BloodPressure, Time: at, Value: Float(120), Components: bp(120, 80)}, "bad_reading", "panel"},
		{"waveform sample out of range", Reading{Code: ECG, Unit: "mV", Time: at, PeriodMS: 4, Samples: []float64{0, 11}}, "out_of_range", "sample 1"},
		{"waveform without period", Reading{Code: ECG, Unit: "mV", Time: at, Samples: []float64{0}}, "bad_reading", "period_ms"},
		{"device name too long", Reading{Code: HeartRate, Value: Float(72), Unit: "/min", Time: at, Device: strings.Repeat("x", 81)}, "bad_reading", "device"},
		{"device name with a control character", Reading{Code: HeartRate, Value: Float(72), Unit: "/min", Time: at, Device: "Nonin\x1b[31m"}, "bad_reading", "device"},
		{"waveform too long", Reading{Code: ECG, Unit: "mV", Time: at, PeriodMS: 4, Samples: make([]float64, MaxSamples+1)}, "bad_reading", "samples"},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, err := Validate(c.r, now)
			if c.code == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if !v.Time.Equal(at.Truncate(time.Millisecond)) || v.Time.Location() != time.UTC {
					t.Fatalf("time %v, want UTC to the millisecond", v.Time)
				}
				if v.Code == PulseOximetry || (v.Code == BloodPressure && v.Components[0].Code != Systolic) {
					t.Fatalf("not canonical: %+v", v)
				}
				return
			}
			e, ok := err.(*Error)
			if !ok || string(e.Code) != c.code || !strings.Contains(e.Message, c.mention) {
				t.Fatalf("got %v, want %s mentioning %q", err, c.code, c.mention)
			}
		})
	}
}

func TestThresholdCrossed(t *testing.T) {
	th := Threshold{Low: Float(92)}
	if b, ok := th.Crossed(91.9); !ok || b != "low" {
		t.Fatalf("91.9 below 92: %q %v", b, ok)
	}
	if _, ok := th.Crossed(92); ok {
		t.Fatal("92 is not below 92")
	}
	if _, ok := th.Crossed(1000); ok {
		t.Fatal("no high bound")
	}
}
