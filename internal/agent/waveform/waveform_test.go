package waveform

import (
	"testing"
	"time"

	"github.com/telemed/telemed/vitals"
)

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

func TestJoiner(t *testing.T) {
	var out []vitals.Reading
	j := NewJoiner(func(r vitals.Reading) { out = append(out, r) })
	piece := func(i int) vitals.Reading {
		return vitals.Reading{Code: vitals.ECG, Unit: "mV", PeriodMS: 4, Time: t0.Add(time.Duration(i) * 20 * time.Millisecond),
			Samples: []float64{float64(i), 0, 0, 0, 0}}
	}
	for i := range 120 {
		j.Add(piece(i))
	}
	if len(out) != 2 || len(out[0].Samples) != 250 || !out[1].Time.Equal(t0.Add(time.Second)) || out[1].Samples[5] != 51 {
		t.Fatalf("joined %d readings", len(out))
	}
	// A gap starts a new reading; a pause flushes.
	j.Add(piece(200))
	j.FlushStale()
	j.FlushStale()
	if len(out) != 4 || len(out[2].Samples) != 100 || len(out[3].Samples) != 5 {
		t.Fatalf("after a gap and a pause: %d readings", len(out))
	}
	// Pieces of a second or more go as they are.
	long := piece(300)
	long.Samples = make([]float64, 400)
	j.Add(long)
	if len(out) != 5 || len(out[4].Samples) != 400 {
		t.Fatalf("a long piece: %d readings", len(out))
	}
	// Live, a waveform goes in pieces of 20 ms.
	ps := Split(long, 20*time.Millisecond)
	if len(ps) != 80 || len(ps[1].Samples) != 5 || !ps[1].Time.Equal(long.Time.Add(20*time.Millisecond)) {
		t.Errorf("split into %d pieces", len(ps))
	}
}
