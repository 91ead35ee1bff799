package vitals

import (
	"encoding/json"
	"math"
	"testing"
	"time"
)

// FuzzValidate feeds any JSON to the reading decoder and validator the server runs on every
// uploaded and every live reading: nothing panics, and whatever passes is canonical and within the
// catalog's limits (a second validation leaves it unchanged).
func FuzzValidate(f *testing.F) {
	for _, s := range []string{
		`{"code":"8867-4","value":72,"unit":"/min","time":"2026-11-24T10:00:00.250Z"}`,
		`{"code":"59408-5","value":97,"unit":"%","time":"2026-11-24T10:00:00Z"}`,
		`{"code":"85354-9","time":"2026-11-24T10:05:00Z","components":[{"code":"8480-6","value":128,"unit":"mm[Hg]"},{"code":"8462-4","value":82,"unit":"mm[Hg]"}]}`,
		`{"code":"8310-5","value":36.8,"unit":"Cel","time":"2026-11-24T10:10:00Z"}`,
		`{"code":"9279-1","value":16,"unit":"/min","time":"2026-11-24T10:00:05Z"}`,
		`{"code":"131329","unit":"mV","time":"2026-11-24T10:00:00Z","period_ms":4,"samples":[0.01,0.02,0.9,-0.2]}`,
		`{"code":"8480-6","value":120,"unit":"mm[Hg]","time":"2026-11-24T10:00:00Z"}`,
		`{"code":"85354-9","time":"2026-11-24T10:05:00Z","components":[{"code":"8480-6","value":128,"unit":"mm[Hg]"},{"code":"8480-6","value":82,"unit":"mm[Hg]"}]}`,
		`{"code":"8867-4","value":1e309,"unit":"/min","time":"2026-11-24T10:00:00Z"}`,
		`{}`,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Reading
		if json.Unmarshal(data, &r) != nil {
			return
		}
		v, err := Validate(r, now)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %T is not a *vitals.Error: %v", err, err)
			}
			return
		}
		s, ok := Lookup(v.Code)
		if !ok || v.Code == PulseOximetry || v.Time.Location() != time.UTC || v.Time.After(now.Add(MaxFutureSkew)) {
			t.Fatalf("accepted a reading that is not canonical: %+v", v)
		}
		check := func(sig Signal, x float64) {
			if math.IsNaN(x) || x < sig.Min || x > sig.Max {
				t.Fatalf("accepted %s value %g outside %g..%g", sig.Code, x, sig.Min, sig.Max)
			}
		}
		switch s.Kind {
		case KindValue:
			check(s, *v.Value)
		case KindPanel:
			if len(v.Components) != len(s.Components) {
				t.Fatalf("panel with %d components accepted", len(v.Components))
			}
			for i, c := range v.Components {
				check(s.Components[i], *c.Value)
			}
		case KindWaveform:
			for _, x := range v.Samples {
				check(s, x)
			}
		}
		again, err := Validate(v, now)
		if err != nil {
			t.Fatalf("a validated reading fails validation again: %v", err)
		}
		a, _ := json.Marshal(v)
		b, _ := json.Marshal(again)
		if string(a) != string(b) {
			t.Fatalf("validation is not idempotent:\n%s\n%s", a, b)
		}
	})
}
