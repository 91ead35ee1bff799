// Package source is where the device agent's readings come from: simulated devices (Sim) measuring a
// simulated patient, and a bridge writing JSON lines to standard input (LineSource). Each is an
// agent.Source.
package source

import (
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/telemed/telemed/vitals"
)

// Names of the simulated devices (telemed device --sim).
const (
	SimPulseOximeter = "pulse-oximeter"
	SimBPCuff        = "bp-cuff"
	SimThermometer   = "thermometer"
	SimECG           = "ecg"
	SimResp          = "resp"
)

// SimNames lists the simulated devices, for usage text and errors.
func SimNames() []string {
	return []string{SimPulseOximeter, SimBPCuff, SimThermometer, SimECG, SimResp}
}

// DefaultSimInterval is how often a simulated device measures: what real ones do. The ECG's is the
// length of one piece of its waveform, as streamed live.
func DefaultSimInterval(name string) time.Duration {
	switch name {
	case SimPulseOximeter:
		return time.Second
	case SimBPCuff:
		return 5 * time.Minute
	case SimThermometer:
		return 10 * time.Minute
	case SimECG:
		return 20 * time.Millisecond
	case SimResp:
		return 5 * time.Second
	}
	return 0
}

// ecgPeriodMS is the simulated ECG's sampling period: 250 Hz.
const ecgPeriodMS = 4

// Patient is a simulated patient's physiology: smooth functions of time with no state, so that every
// device measuring the same Patient agrees (the ECG beats at the pulse oximeter's rate), and the
// same seed gives the same patient at the same time, on any machine.
type Patient struct {
	seed                       uint64
	baseHR, baseRR             float64
	baseSys, baseDia, baseTemp float64
	baseSpO2                   float64
	hr, rr, spo2, sys, dia     wander
	temp, ecgWander            wander
	rsa                        float64 // respiratory sinus arrhythmia, beats/min either way
}

// wander is a slow drift: a sum of sines of periods long beside the sampling, with seeded phases.
type wander struct {
	amp, omega, phase [3]float64
}

func newWander(r *rand.Rand, amp float64, minPeriod, maxPeriod time.Duration) wander {
	var w wander
	for i := range w.amp {
		period := minPeriod.Seconds() + r.Float64()*(maxPeriod-minPeriod).Seconds()
		w.amp[i] = amp / 3 * (0.5 + r.Float64())
		w.omega[i] = 2 * math.Pi / period
		w.phase[i] = 2 * math.Pi * r.Float64()
	}
	return w
}

func (w wander) at(t float64) float64 {
	var v float64
	for i := range w.amp {
		v += w.amp[i] * math.Sin(w.omega[i]*t+w.phase[i])
	}
	return v
}

// integral is the integral of at from the epoch to t, up to a constant: how far a rate that wanders
// has advanced a phase.
func (w wander) integral(t float64) float64 {
	var v float64
	for i := range w.amp {
		v -= w.amp[i] / w.omega[i] * math.Cos(w.omega[i]*t+w.phase[i])
	}
	return v
}

// NewPatient returns the simulated patient of a seed: an adult at rest, with normal vital signs.
func NewPatient(seed uint64) *Patient {
	r := rand.New(rand.NewPCG(seed, 0x7e1e3ed))
	return &Patient{
		seed:   seed,
		baseHR: 68 + 8*r.Float64(), baseRR: 14 + 2*r.Float64(),
		baseSys: 118 + 10*r.Float64(), baseDia: 76 + 6*r.Float64(),
		baseTemp: 36.7 + 0.2*r.Float64(), baseSpO2: 97.2 + 0.6*r.Float64(),
		hr:   newWander(r, 6, 10*time.Minute, 2*time.Hour),
		rr:   newWander(r, 1.5, 10*time.Minute, time.Hour),
		spo2: newWander(r, 0.7, 5*time.Minute, time.Hour),
		sys:  newWander(r, 4, 20*time.Minute, 3*time.Hour),
		dia:  newWander(r, 3, 20*time.Minute, 3*time.Hour),
		temp: newWander(r, 0.1, time.Hour, 4*time.Hour),
		// Baseline wander of the ECG beside breathing: electrode and body movement.
		ecgWander: newWander(r, 0.04, 7*time.Second, 40*time.Second),
		rsa:       2 + 2*r.Float64(),
	}
}

func seconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// RespiratoryRate is the breathing rate at t, breaths/min.
func (p *Patient) RespiratoryRate(t time.Time) float64 {
	return p.baseRR + p.rr.at(seconds(t))
}

// breathPhase is the breathing cycle's phase at t, in radians.
func (p *Patient) breathPhase(t time.Time) float64 {
	s := seconds(t)
	return 2 * math.Pi / 60 * (p.baseRR*s + p.rr.integral(s))
}

// HeartRate is the heart rate at t, beats/min: a drift and the respiratory sinus arrhythmia (faster
// breathing in, slower out).
func (p *Patient) HeartRate(t time.Time) float64 {
	return p.baseHR + p.hr.at(seconds(t)) + p.rsa*math.Sin(p.breathPhase(t))
}

// beats is how many beats the heart has made by t since the epoch (the integral of the heart rate,
// in beats); an R wave falls on each whole number.
func (p *Patient) beats(t time.Time) float64 {
	s := seconds(t)
	// The arrhythmia's integral with the breathing rate taken as constant: close enough at rest.
	rsa := -p.rsa / (2 * math.Pi * p.baseRR / 60) * math.Cos(p.breathPhase(t))
	return (p.baseHR*s + p.hr.integral(s) + rsa) / 60
}

// desaturation windows: in each window of this length, a dip may happen.
const dipWindow = 15 * 60

// dip returns the desaturation event of the window containing t: when it starts and how long it
// lasts (s) and how deep it goes (% SpO2); depth 0 when the window has none.
func (p *Patient) dip(t time.Time) (start, length, depth float64) {
	w := math.Floor(seconds(t) / dipWindow)
	h := splitmix(p.seed ^ uint64(int64(w))*0x9e3779b97f4a7c15)
	if h%5 != 0 { // one window in five
		return 0, 0, 0
	}
	start = w*dipWindow + float64((h>>8)%600)
	length = 30 + float64((h>>20)%60)
	depth = 3 + float64((h>>32)%50)/10
	return start, length, depth
}

// desaturation is how far SpO2 is below its baseline at t because of a dip (a raised cosine).
func (p *Patient) desaturation(t time.Time) float64 {
	start, length, depth := p.dip(t)
	s := seconds(t)
	if depth == 0 || s < start || s > start+length {
		return 0
	}
	return depth * 0.5 * (1 - math.Cos(2*math.Pi*(s-start)/length))
}

// SpO2 is the oxygen saturation at t, %.
func (p *Patient) SpO2(t time.Time) float64 {
	return p.baseSpO2 + p.spo2.at(seconds(t)) - p.desaturation(t)
}

// circadian is a daily cycle peaking at hour peak (of t's location), between -1 and 1.
func circadian(t time.Time, peak float64) float64 {
	h := float64(t.Hour()) + float64(t.Minute())/60 + float64(t.Second())/3600
	return math.Cos(2 * math.Pi * (h - peak) / 24)
}

// BloodPressure is the systolic and diastolic pressure at t, mmHg: lower at night, highest in the
// afternoon.
func (p *Patient) BloodPressure(t time.Time) (systolic, diastolic float64) {
	c := circadian(t, 15)
	s := seconds(t)
	return p.baseSys + 8*c + p.sys.at(s), p.baseDia + 5*c + p.dia.at(s)
}

// Temperature is the body temperature at t, °C: lowest before dawn, highest in the late afternoon.
func (p *Patient) Temperature(t time.Time) float64 {
	return p.baseTemp + 0.25*circadian(t, 17) + p.temp.at(seconds(t))
}

// ecgWave is one wave of the PQRST complex: a Gaussian at mu seconds from the R peak.
type ecgWave struct{ a, mu, sigma float64 }

// ECG is the lead I potential at t, mV, without noise: a sum of Gaussians per beat (after McSharry et
// al., 2003, with times in seconds instead of phase), the T wave later at slower rates (as QT is),
// the R wave taller breathing in, and a baseline that wanders with breathing.
func (p *Patient) ECG(t time.Time) float64 {
	b := p.beats(t)
	rr := 60 / p.HeartRate(t)
	qt := math.Sqrt(rr) // Bazett: QT grows with the root of the RR interval
	waves := [...]ecgWave{
		{0.12, -0.17, 0.025},          // P
		{-0.12, -0.028, 0.010},        // Q
		{1.05, 0, 0.011},              // R
		{-0.25, 0.030, 0.011},         // S
		{0.30, 0.26 * qt, 0.055 * qt}, // T
	}
	breath := math.Sin(p.breathPhase(t))
	frac := b - math.Floor(b)
	var v float64
	// The beat whose R has passed (its S and T) and the next one (its P and Q).
	for _, dt := range [2]float64{frac * rr, (frac - 1) * rr} {
		for i, w := range waves {
			a := w.a
			if i == 2 {
				a *= 1 + 0.06*breath
			}
			x := (dt - w.mu) / w.sigma
			v += a * math.Exp(-x*x/2)
		}
	}
	return v + 0.06*breath + p.ecgWander.at(seconds(t))
}

// nameHash is FNV-1a of a device's name: each device of one seed has noise of its own.
func nameHash(name string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(name); i++ {
		h = (h ^ uint64(name[i])) * 1099511628211
	}
	return h
}

// splitmix is SplitMix64's finalizer: a well-mixed hash of a 64-bit value.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// SimOptions configure a simulated device.
type SimOptions struct {
	// Seed makes the measurement noise, and the patient when Patient is nil: the same seed and times
	// give the same readings. Default 0 (a seed like any other).
	Seed uint64
	// Patient is who is measured; devices sharing one agree with each other. Default: NewPatient(Seed).
	Patient *Patient
	// Interval is the time between readings (for the ECG, the length of a piece, a multiple of 4 ms).
	// Default: DefaultSimInterval.
	Interval time.Duration
	// Now stamps the readings. Default: time.Now.
	Now func() time.Time
}

// Sim is a simulated device: a Source whose readings pass vitals.Validate and look like a resting
// adult's, with noise. It is safe for one goroutine at a time.
type Sim struct {
	name     string
	device   string
	interval time.Duration
	patient  *Patient
	rng      *rand.Rand
	now      func() time.Time

	mu   sync.Mutex
	next time.Time // the ECG's next sample; zero before the first Take
}

// NewSim returns the simulated device of a name (SimNames).
func NewSim(name string, o SimOptions) (*Sim, error) {
	def := DefaultSimInterval(name)
	if def == 0 {
		return nil, fmt.Errorf("no simulated device %q: choose one of %s", name, strings.Join(SimNames(), ", "))
	}
	if o.Interval == 0 {
		o.Interval = def
	}
	if o.Interval < 0 {
		return nil, fmt.Errorf("sim %s: interval %s is negative", name, o.Interval)
	}
	if name == SimECG && (o.Interval < ecgPeriodMS*time.Millisecond || o.Interval%(ecgPeriodMS*time.Millisecond) != 0 ||
		o.Interval > vitals.MaxSamples*ecgPeriodMS*time.Millisecond) {
		return nil, fmt.Errorf("sim %s: a piece of %s is not a whole number of 4 ms samples between 1 and %d", name, o.Interval, vitals.MaxSamples)
	}
	if o.Patient == nil {
		o.Patient = NewPatient(o.Seed)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Sim{name: name, device: "telemed simulated " + name, interval: o.Interval, patient: o.Patient,
		rng: rand.New(rand.NewPCG(o.Seed, nameHash(name))), now: o.Now}, nil
}

// Name is the device's name, as --sim takes it.
func (s *Sim) Name() string { return s.name }

// Interval is the time between its readings.
func (s *Sim) Interval() time.Duration { return s.interval }

func (s *Sim) noise(sigma float64) float64 { return s.rng.NormFloat64() * sigma }

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }

func (s *Sim) value(code, unit string, v float64, at time.Time) vitals.Reading {
	return vitals.Reading{Code: code, Value: vitals.Float(v), Unit: unit, Time: at, Device: s.device}
}

// Take measures at t: the readings the device would report then. The ECG reports the pieces of its
// waveform from its previous Take up to t (none at the first, which starts the waveform at t; at
// most 2 s of them, as a device that was suspended would).
func (s *Sim) Take(t time.Time) []vitals.Reading {
	s.mu.Lock()
	defer s.mu.Unlock()
	at := t.Truncate(time.Millisecond)
	p := s.patient
	switch s.name {
	case SimPulseOximeter:
		spo2 := clamp(math.Round(p.SpO2(t)+s.noise(0.4)), 50, 100)
		hr := clamp(math.Round(p.HeartRate(t)+s.noise(1)), 25, 250)
		return []vitals.Reading{s.value(vitals.OxygenSaturation, "%", spo2, at), s.value(vitals.HeartRate, "/min", hr, at)}
	case SimBPCuff:
		sys, dia := p.BloodPressure(t)
		sys, dia = math.Round(sys+s.noise(3)), math.Round(dia+s.noise(2))
		dia = math.Min(dia, sys-20)
		return []vitals.Reading{{Code: vitals.BloodPressure, Time: at, Device: s.device, Components: []vitals.Component{
			{Code: vitals.Systolic, Value: vitals.Float(clamp(sys, 60, 250)), Unit: "mm[Hg]"},
			{Code: vitals.Diastolic, Value: vitals.Float(clamp(dia, 30, 160)), Unit: "mm[Hg]"}}}}
	case SimThermometer:
		c := clamp(math.Round((p.Temperature(t)+s.noise(0.05))*10)/10, 36.4, 37.2)
		return []vitals.Reading{s.value(vitals.BodyTemperature, "Cel", c, at)}
	case SimResp:
		rr := clamp(math.Round(p.RespiratoryRate(t)+s.noise(0.7)), 12, 20)
		return []vitals.Reading{s.value(vitals.RespiratoryRate, "/min", rr, at)}
	case SimECG:
		return s.ecgLocked(t)
	}
	return nil
}

func (s *Sim) ecgLocked(t time.Time) []vitals.Reading {
	period := ecgPeriodMS * time.Millisecond
	if s.next.IsZero() {
		s.next = t.Truncate(period)
		return nil
	}
	if t.Sub(s.next) > 2*time.Second {
		s.next = t.Add(-2 * time.Second).Truncate(period) // a gap in the waveform, as a real one has
	}
	n := int(s.interval / period)
	var out []vitals.Reading
	for !s.next.Add(s.interval).After(t) {
		samples := make([]float64, n)
		for i := range samples {
			v := s.patient.ECG(s.next.Add(time.Duration(i)*period)) + s.noise(0.012)
			samples[i] = math.Round(clamp(v, -5, 5)*1000) / 1000 // µV resolution, like a device's ADC
		}
		out = append(out, vitals.Reading{Code: vitals.ECG, Unit: "mV", Time: s.next, PeriodMS: ecgPeriodMS,
			Samples: samples, Device: s.device})
		s.next = s.next.Add(s.interval)
	}
	return out
}

// Run measures every Interval, from now on, until ctx ends.
func (s *Sim) Run(ctx context.Context, emit func(vitals.Reading)) error {
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for {
		for _, r := range s.Take(s.now()) {
			emit(r)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Source is something that measures, as the agent runs it (agent.Source is this).
type Source interface {
	// Name names the source in logs.
	Name() string
	// Run measures until ctx ends (or the source has nothing more), handing each reading to emit.
	Run(ctx context.Context, emit func(vitals.Reading)) error
}

// Setup says what a device agent measures with.
type Setup struct {
	// Sims are the simulated devices (SimNames), each measuring the same simulated patient.
	Sims []string
	// Seed seeds the patient and the devices' noise.
	Seed uint64
	// BPInterval and TempInterval are how often the bp-cuff and the thermometer measure; their
	// DefaultSimInterval if zero.
	BPInterval, TempInterval time.Duration
	// Stdin, if set, is a bridge's output of JSON lines; OnBadLine hears of each line skipped.
	Stdin     io.Reader
	OnBadLine func(n int, err error)
}

// Build returns the sources of a setup.
func Build(s Setup) ([]Source, error) {
	patient := NewPatient(s.Seed)
	var out []Source
	for _, name := range s.Sims {
		o := SimOptions{Seed: s.Seed, Patient: patient}
		switch name {
		case SimBPCuff:
			o.Interval = s.BPInterval
		case SimThermometer:
			o.Interval = s.TempInterval
		}
		sim, err := NewSim(name, o)
		if err != nil {
			return nil, err
		}
		out = append(out, sim)
	}
	if s.Stdin != nil {
		out = append(out, &LineSource{R: s.Stdin, OnBadLine: s.OnBadLine})
	}
	return out, nil
}

// SeedOf is the seed of a device's simulated patient when none is given: from its id, so that the
// same device simulates the same patient each run.
func SeedOf(deviceID string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(deviceID))
	return h.Sum64()
}
