// Package loopback builds pion APIs whose peers use only this machine's loopback interface: for tests
// and benchmarks, whose calls must stay on the machine and not depend on its other networks.
package loopback

import (
	"io"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"
)

// API returns a pion API whose peers gather only IPv4 loopback host candidates, without mDNS. With
// quiet, pion's own log is discarded (its teardown lines break up benchmark output). Each tune (such
// as client.TuneSettingEngine) then adjusts the settings.
func API(quiet bool, tune ...func(*webrtc.SettingEngine)) *webrtc.API {
	var se webrtc.SettingEngine
	if quiet {
		se.LoggerFactory = &logging.DefaultLoggerFactory{Writer: io.Discard, DefaultLogLevel: logging.LogLevelDisabled}
	}
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	for _, f := range tune {
		f(&se)
	}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		panic("loopback: default codecs: " + err.Error()) // fixed input: cannot fail
	}
	return webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(m))
}
