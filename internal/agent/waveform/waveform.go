// Package waveform shapes the device agent's waveforms: cut into 20 ms pieces to stream live, joined
// into readings of about a second for the queue.
package waveform

import (
	"math"
	"strconv"
	"time"

	"github.com/telemed/telemed/vitals"
)

// Split cuts a waveform into pieces of at most d (at least one sample each): how it is streamed live.
func Split(r vitals.Reading, d time.Duration) []vitals.Reading {
	n := max(1, int(d.Seconds()*1000/r.PeriodMS))
	if len(r.Samples) <= n {
		return []vitals.Reading{r}
	}
	var out []vitals.Reading
	for i := 0; i < len(r.Samples); i += n {
		p := r
		p.Samples = r.Samples[i:min(i+n, len(r.Samples))]
		p.Time = r.Time.Add(time.Duration(float64(i) * r.PeriodMS * float64(time.Millisecond)))
		out = append(out, p)
	}
	return out
}

// Joiner joins the pieces of a waveform into readings of about a second for the queue: 250 samples
// of ECG in one reading, not 50 of 5. It is not safe for concurrent use.
type Joiner struct {
	cur map[string]*joined // by signal, device and sampling
	out func(vitals.Reading)
}

// NewJoiner returns a Joiner that hands each joined reading (and every other reading it is given
// whole) to out.
func NewJoiner(out func(vitals.Reading)) *Joiner {
	return &Joiner{cur: map[string]*joined{}, out: out}
}

type joined struct {
	r    vitals.Reading
	grew bool // since the last flushStale
}

// Add takes the next piece of a waveform.
func (j *Joiner) Add(r vitals.Reading) {
	key := r.Code + "\x00" + r.Device + "\x00" + r.Unit + "\x00" + strconv.FormatFloat(r.PeriodMS, 'g', -1, 64)
	second := int(math.Round(1000 / r.PeriodMS))
	c := j.cur[key]
	if c != nil {
		next := c.r.Time.Add(time.Duration(float64(len(c.r.Samples)) * r.PeriodMS * float64(time.Millisecond)))
		gap := r.Time.Sub(next).Abs()
		if gap > time.Duration(r.PeriodMS/2*float64(time.Millisecond)) || len(c.r.Samples)+len(r.Samples) > vitals.MaxSamples {
			j.out(c.r)
			delete(j.cur, key)
			c = nil
		}
	}
	if c == nil {
		if len(r.Samples) >= second {
			j.out(r)
			return
		}
		r.Samples = append(make([]float64, 0, second), r.Samples...)
		j.cur[key] = &joined{r: r, grew: true}
		return
	}
	c.r.Samples = append(c.r.Samples, r.Samples...)
	c.grew = true
	if len(c.r.Samples) >= second {
		j.out(c.r)
		delete(j.cur, key)
	}
}

// FlushStale hands out the waveforms that did not grow since the last call: their source paused.
func (j *Joiner) FlushStale() {
	for k, c := range j.cur {
		if !c.grew {
			j.out(c.r)
			delete(j.cur, k)
			continue
		}
		c.grew = false
	}
}

// FlushAll hands out every waveform it holds: the agent is stopping.
func (j *Joiner) FlushAll() {
	for k, c := range j.cur {
		j.out(c.r)
		delete(j.cur, k)
	}
}
