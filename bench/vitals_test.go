package bench

import (
	"context"
	"encoding/json"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/telemed/telemed/client"
	"github.com/telemed/telemed/internal/consultations"
	"github.com/telemed/telemed/vitals"
)

// ecgPiece is how the device agent streams a 250 Hz ECG: 5 samples (20 ms) a frame.
const (
	ecgPeriod      = 4 * time.Millisecond
	ecgPieceLength = 5
)

// latencyLog collects, for each piece received, the time from its last sample being taken (the
// earliest it could be sent) to its arrival.
type latencyLog struct {
	mu   sync.Mutex
	ds   []time.Duration
	got  int
	done chan struct{}
	want int
}

func newLatencyLog(want int) *latencyLog { return &latencyLog{done: make(chan struct{}), want: want} }

func (l *latencyLog) add(r vitals.Reading, at time.Time) {
	last := r.Time.Add(time.Duration(len(r.Samples)-1) * time.Duration(r.PeriodMS*float64(time.Millisecond)))
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ds = append(l.ds, at.Sub(last))
	l.got++
	if l.got == l.want {
		close(l.done)
	}
}

func (l *latencyLog) report(b *testing.B, sent int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b.ReportMetric(ms(quantile(l.ds, 0.5)), "p50-ms")
	b.ReportMetric(ms(quantile(l.ds, 0.99)), "p99-ms")
	b.ReportMetric(ms(quantile(l.ds, 1)), "max-ms")
	b.ReportMetric(100*float64(sent-l.got)/float64(sent), "lost-%")
}

// streamECG sends n 20 ms pieces of a 250 Hz ECG, each as soon as its last sample is taken, by send.
func streamECG(ctx context.Context, n int, send func(vitals.Reading) error) error {
	tick := time.NewTicker(ecgPieceLength * ecgPeriod)
	defer tick.Stop()
	for i := range n {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now := <-tick.C:
			s := make([]float64, ecgPieceLength)
			for j := range s {
				s[j] = math.Sin(float64(i*ecgPieceLength+j) / 10)
			}
			start := now.Add(-(ecgPieceLength - 1) * ecgPeriod)
			if err := send(vitals.Reading{Code: vitals.ECG, Unit: "mV", Time: start, PeriodMS: 4, Samples: s}); err != nil {
				return err
			}
		}
	}
	return nil
}

// BenchmarkECGLatency measures device-to-provider latency of a live 250 Hz ECG on loopback: telemed
// (a device agent's session and a provider's session joined through a real server, the waveform on
// the unordered, no-retransmit channel, validated on receipt) beside two pion peers signaled
// in-process with the same kind of channel carrying the same JSON frames (pion-direct, the floor).
// An op is one 20 ms piece: run it with -benchtime=Nx (N pieces, N/50 seconds).
func BenchmarkECGLatency(b *testing.B) {
	b.Run("telemed", benchECGTelemed)
	b.Run("pion-direct", benchECGDirect)
}

func benchECGTelemed(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ie := startIngest(b, 1)
	c, err := ie.svc.Consultations.CreateConsultation(ctx, ie.provider, "bench", consultations.NewConsultation{Title: "Bench", TTL: time.Hour, PatientID: ie.patient.ID})
	if err != nil {
		b.Fatal(err)
	}
	lat := newLatencyLog(b.N)
	var warm sync.Once
	warmed := make(chan struct{})
	prov, err := client.Join(ctx, client.Config{Link: c.StartURL, API: loopbackAPI(), NoReconnect: true,
		OnReading: func(_ *client.Peer, r vitals.Reading) {
			at := time.Now()
			if r.Device == "warm-up" {
				warm.Do(func() { close(warmed) })
				return
			}
			lat.add(r, at)
		}})
	if err != nil {
		b.Fatal(err)
	}
	defer prov.Close()
	d, err := ie.svc.Monitoring.DeviceByToken(ctx, ie.tokens[0])
	if err != nil {
		b.Fatal(err)
	}
	ds, err := ie.svc.Monitoring.DeviceSession(ctx, d, func(string) bool { return true })
	if err != nil || ds.Consultation == nil {
		b.Fatalf("device session: %+v %v", ds, err)
	}
	dev, err := client.Join(ctx, client.Config{Link: ds.Consultation.Link, Name: "ECG", API: loopbackAPI(), NoReconnect: true, SendVitals: true})
	if err != nil {
		b.Fatal(err)
	}
	defer dev.Close()
	// Until the provider gets a piece, the channel is not open yet.
	for done := false; !done; {
		dev.SendReading(vitals.Reading{Code: vitals.ECG, Unit: "mV", Time: time.Now(), PeriodMS: 4, Samples: []float64{0}, Device: "warm-up"})
		select {
		case <-warmed:
			done = true
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			b.Fatal("the provider never received a piece")
		}
	}
	b.ResetTimer()
	if err := streamECG(ctx, b.N, dev.SendReading); err != nil {
		b.Fatal(err)
	}
	waitArrivals(lat)
	b.StopTimer()
	lat.report(b, b.N)
}

func benchECGDirect(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lat := newLatencyLog(b.N)
	var warm sync.Once
	warmed := make(chan struct{})
	ordered, retransmits := false, uint16(0)
	dc, closeAll, err := connectRawChannel(ctx, loopbackAPI, client.WaveformLabel,
		&webrtc.DataChannelInit{Ordered: &ordered, MaxRetransmits: &retransmits},
		func(m webrtc.DataChannelMessage) {
			at := time.Now()
			var f struct{ Reading vitals.Reading }
			if err := json.Unmarshal(m.Data, &f); err != nil {
				return
			}
			if f.Reading.Device == "warm-up" {
				warm.Do(func() { close(warmed) })
				return
			}
			lat.add(f.Reading, at)
		})
	if err != nil {
		b.Fatal(err)
	}
	defer closeAll()
	seq := 0
	send := func(r vitals.Reading) error {
		seq++
		body, err := json.Marshal(map[string]any{"type": "reading", "seq": seq, "reading": r})
		if err != nil {
			return err
		}
		return dc.SendText(string(body))
	}
	send(vitals.Reading{Code: vitals.ECG, Unit: "mV", Time: time.Now(), PeriodMS: 4, Samples: []float64{0}, Device: "warm-up"})
	<-warmed
	b.ResetTimer()
	if err := streamECG(ctx, b.N, send); err != nil {
		b.Fatal(err)
	}
	waitArrivals(lat)
	b.StopTimer()
	lat.report(b, b.N)
}

// waitArrivals waits for the last pieces to arrive, or a second: a piece that has not come by then
// is lost (nothing retransmits it).
func waitArrivals(l *latencyLog) {
	select {
	case <-l.done:
	case <-time.After(time.Second):
	}
}
