package source

import (
	"context"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/telemed/telemed/vitals"
)

// TestSimsArePlausible runs every simulated device over two simulated days: each reading passes
// vitals.Validate and lies where a resting adult's would.
func TestSimsArePlausible(t *testing.T) {
	start := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	ranges := map[string][2]float64{
		vitals.OxygenSaturation: {85, 100},
		vitals.HeartRate:        {50, 100},
		vitals.Systolic:         {95, 150},
		vitals.Diastolic:        {60, 100},
		vitals.BodyTemperature:  {36.4, 37.2},
		vitals.RespiratoryRate:  {12, 20},
	}
	for _, seed := range []uint64{0, 1, 42, 1 << 40} {
		patient := NewPatient(seed)
		for _, name := range SimNames() {
			if name == SimECG {
				continue // TestECG
			}
			sim, err := NewSim(name, SimOptions{Seed: seed, Patient: patient})
			if err != nil {
				t.Fatal(err)
			}
			step := sim.Interval()
			if step < time.Minute {
				step = 37 * time.Second // a sample of the days, not every second
			}
			seen := map[string][2]float64{}
			for at := start; at.Before(start.Add(48 * time.Hour)); at = at.Add(step) {
				for _, r := range sim.Take(at) {
					c, err := vitals.Validate(r, at)
					if err != nil {
						t.Fatalf("seed %d %s at %s: %v", seed, name, at, err)
					}
					values := map[string]float64{}
					if c.Value != nil {
						values[c.Code] = *c.Value
					}
					for _, comp := range c.Components {
						values[comp.Code] = *comp.Value
					}
					for code, v := range values {
						rg := ranges[code]
						if v < rg[0] || v > rg[1] {
							t.Errorf("seed %d %s at %s: %s = %g, outside %v", seed, name, at, code, v, rg)
						}
						s, ok := seen[code]
						if !ok {
							s = [2]float64{v, v}
						}
						seen[code] = [2]float64{math.Min(s[0], v), math.Max(s[1], v)}
					}
				}
			}
			// Not flat: the signals vary as people's do.
			for code, s := range seen {
				if s[1]-s[0] < 0.3 {
					t.Errorf("seed %d %s: %s stays within %v", seed, name, code, s)
				}
			}
		}
	}
}

func TestSimPhysiology(t *testing.T) {
	p := NewPatient(7)
	day := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	// Desaturation dips happen, now and then, and stay plausible.
	dips, lowest := 0, 100.0
	for at := day; at.Before(day.Add(24 * time.Hour)); at = at.Add(10 * time.Second) {
		if p.desaturation(at) > 1 {
			dips++
		}
		lowest = math.Min(lowest, p.SpO2(at))
	}
	if dips == 0 || lowest < 86 || lowest > 95 {
		t.Errorf("a day has %d samples in a dip, lowest SpO2 %.1f", dips, lowest)
	}
	// Breathing in speeds the heart (respiratory sinus arrhythmia): within one breath it varies.
	lo, hi := 300.0, 0.0
	for at := day; at.Before(day.Add(10 * time.Second)); at = at.Add(100 * time.Millisecond) {
		hr := p.HeartRate(at)
		lo, hi = math.Min(lo, hr), math.Max(hi, hr)
	}
	if hi-lo < 2 || hi-lo > 10 {
		t.Errorf("heart rate within a breath varies %.1f to %.1f", lo, hi)
	}
	// Circadian: the afternoon pressure is above the night's, the afternoon temperature too.
	s3, _ := p.BloodPressure(day.Add(3 * time.Hour))
	s15, _ := p.BloodPressure(day.Add(15 * time.Hour))
	if s15-s3 < 5 {
		t.Errorf("systolic at 03:00 %.0f, at 15:00 %.0f", s3, s15)
	}
	if p.Temperature(day.Add(17*time.Hour))-p.Temperature(day.Add(5*time.Hour)) < 0.2 {
		t.Error("temperature does not peak in the afternoon")
	}
}

func TestSimDeterministic(t *testing.T) {
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	take := func(seed uint64, name string) []vitals.Reading {
		s, err := NewSim(name, SimOptions{Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		var out []vitals.Reading
		for i := range 100 {
			out = append(out, s.Take(at.Add(time.Duration(i)*20*time.Millisecond))...)
		}
		return out
	}
	for _, name := range SimNames() {
		a, b, c := take(3, name), take(3, name), take(4, name)
		if len(a) == 0 || !reflect.DeepEqual(a, b) {
			t.Errorf("%s: two runs of seed 3 differ (or are empty: %d readings)", name, len(a))
		}
		if reflect.DeepEqual(a, c) {
			t.Errorf("%s: seeds 3 and 4 give the same readings", name)
		}
	}
	if _, err := NewSim("glucometer", SimOptions{}); err == nil || !strings.Contains(err.Error(), "pulse-oximeter, bp-cuff, thermometer, ecg, resp") {
		t.Errorf("unknown sim: %v", err)
	}
	if _, err := NewSim(SimECG, SimOptions{Interval: 10 * time.Millisecond}); err == nil {
		t.Error("an ECG piece of 10 ms (2.5 samples) was accepted")
	}
}

// TestECG: the simulated ECG is a 250 Hz lead in 20 ms pieces without gaps, with R waves of about
// 1 mV at the rate the pulse oximeter reports.
func TestECG(t *testing.T) {
	start := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	patient := NewPatient(11)
	ecg, err := NewSim(SimECG, SimOptions{Seed: 11, Patient: patient})
	if err != nil {
		t.Fatal(err)
	}
	ox, _ := NewSim(SimPulseOximeter, SimOptions{Seed: 11, Patient: patient})
	ecg.Take(start)
	var samples []float64
	next := start
	const span = 60 * time.Second
	for at := start; !at.After(start.Add(span)); at = at.Add(20 * time.Millisecond) {
		for _, r := range ecg.Take(at) {
			if _, err := vitals.Validate(r, at); err != nil {
				t.Fatal(err)
			}
			if !r.Time.Equal(next) || len(r.Samples) != 5 || r.PeriodMS != 4 {
				t.Fatalf("piece at %s with %d samples every %g ms; want at %s, 5 every 4", r.Time, len(r.Samples), r.PeriodMS, next)
			}
			next = next.Add(20 * time.Millisecond)
			samples = append(samples, r.Samples...)
		}
	}
	if len(samples) != int(span/(4*time.Millisecond)) {
		t.Fatalf("%d samples in %s", len(samples), span)
	}
	// R peaks: local maxima above 0.6 mV, at least 250 ms apart.
	var peaks []int
	for i := 1; i < len(samples)-1; i++ {
		if samples[i] > 0.6 && samples[i] >= samples[i-1] && samples[i] >= samples[i+1] &&
			(len(peaks) == 0 || i-peaks[len(peaks)-1] > 60) {
			peaks = append(peaks, i)
		}
	}
	var maxR float64
	for _, i := range peaks {
		maxR = math.Max(maxR, samples[i])
	}
	if maxR < 0.8 || maxR > 1.5 {
		t.Errorf("R waves up to %.2f mV; want about 1", maxR)
	}
	ecgRate := float64(len(peaks)-1) / (float64(peaks[len(peaks)-1]-peaks[0]) * 0.004 / 60)
	var pulse float64
	n := 0
	for at := start; at.Before(start.Add(span)); at = at.Add(time.Second) {
		for _, r := range ox.Take(at) {
			if r.Code == vitals.HeartRate {
				pulse += *r.Value
				n++
			}
		}
	}
	pulse /= float64(n)
	if math.Abs(ecgRate-pulse) > 3 {
		t.Errorf("the ECG beats at %.1f /min, the pulse oximeter says %.1f", ecgRate, pulse)
	}
	// Between beats the line is near the baseline (the T wave and the wander stay small).
	below := 0
	for _, v := range samples {
		if math.Abs(v) < 0.4 {
			below++
		}
	}
	if float64(below)/float64(len(samples)) < 0.8 {
		t.Errorf("only %d of %d samples within 0.4 mV of zero", below, len(samples))
	}
}

// TestSimRun: a sim run by the clock measures at once, then every interval.
func TestSimRun(t *testing.T) {
	sim, _ := NewSim(SimResp, SimOptions{Interval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan vitals.Reading, 100)
	done := make(chan error)
	go func() { done <- sim.Run(ctx, func(r vitals.Reading) { got <- r }) }()
	for range 3 {
		select {
		case r := <-got:
			if _, err := vitals.Validate(r, time.Now()); err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no reading")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
