package signal

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/telemed/telemed/protocol"
)

// clientTypes are the message types a client may send, each a label of the messages metric; a
// message that fails to decode counts as "invalid".
var clientTypes = []string{protocol.TypeJoin, protocol.TypeAdmit, protocol.TypeDecline, protocol.TypeRemove,
	protocol.TypeMedia, protocol.TypeAllowShare, protocol.TypeOffer, protocol.TypeAnswer, protocol.TypeCandidate,
	protocol.TypeLeave, protocol.TypePing, "invalid"}

// metrics are this node's signaling collectors.
type metrics struct {
	connections atomic.Int64
	messages    *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{messages: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "telemed_signal_messages_total",
		Help: "Signaling messages received from clients on this node, by type.",
	}, []string{"type"})}
	for _, t := range clientTypes {
		m.messages.WithLabelValues(t)
	}
	return m
}

func (m *metrics) received(typ string) {
	if c, err := m.messages.GetMetricWithLabelValues(typ); err == nil {
		c.Inc()
	}
}

// register adds the collectors to reg; places reports the places held on this node and the
// consultations they are in.
func (m *metrics) register(reg prometheus.Registerer, places func() (int, int)) error {
	gauge := func(name, help string, v func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, v)
	}
	for _, c := range []prometheus.Collector{
		m.messages,
		gauge("telemed_signal_connections", "Signaling WebSocket connections open on this node.",
			func() float64 { return float64(m.connections.Load()) }),
		gauge("telemed_signal_people", "Participants (people and devices, waiting or in a call) connected to this node.",
			func() float64 { n, _ := places(); return float64(n) }),
		gauge("telemed_signal_consultations", "Consultations with a participant connected to this node.",
			func() float64 { _, n := places(); return float64(n) }),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
