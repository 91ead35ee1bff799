package turn

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a request or packet is refused, as the refusals metric labels them.
const (
	reasonForbiddenPeer = "forbidden_peer"
	reasonOwnPort       = "own_port"
	reasonBadCredential = "bad_credential"
	reasonExpired       = "expired_credential"
	reasonQuota         = "quota"
	reasonTCPRelay      = "tcp_relay"
)

var reasons = []string{reasonForbiddenPeer, reasonOwnPort, reasonBadCredential, reasonExpired, reasonQuota, reasonTCPRelay}

// metrics are the relay's Prometheus collectors.
type metrics struct {
	refusals *prometheus.CounterVec
}

func newMetrics(s *Server, reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "telemed_turn_refusals_total",
		Help: "TURN requests and packets refused, by reason.",
	}, []string{"reason"})}
	for _, r := range reasons {
		m.refusals.WithLabelValues(r) // every reason shows, at zero until it happens
	}
	counter := func(name, help, direction string, v func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help,
			ConstLabels: prometheus.Labels{"direction": direction}}, v)
	}
	st := &s.stats
	collectors := []prometheus.Collector{
		m.refusals,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "telemed_turn_allocations",
			Help: "TURN allocations now active.",
		}, func() float64 { return float64(st.allocations.Load()) }),
		counter("telemed_turn_relayed_bytes_total", "Bytes relayed (payload), by direction.", "to_peer",
			func() float64 { return float64(st.toPeerBytes.Load()) }),
		counter("telemed_turn_relayed_bytes_total", "Bytes relayed (payload), by direction.", "to_client",
			func() float64 { return float64(st.toClientBytes.Load()) }),
		counter("telemed_turn_relayed_packets_total", "Packets relayed, by direction.", "to_peer",
			func() float64 { return float64(st.toPeerPackets.Load()) }),
		counter("telemed_turn_relayed_packets_total", "Packets relayed, by direction.", "to_client",
			func() float64 { return float64(st.toClientPackets.Load()) }),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
