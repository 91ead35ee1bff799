package consultations

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/telemed/telemed/errcode"
)

// quality decodes a report body as the HTTP edge does.
func quality(t *testing.T, body string) QualityInput {
	t.Helper()
	var in QualityInput
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	return in
}

func TestCheckQuality(t *testing.T) {
	const precall = `"stun":true,"public_address":"ipv4","udp":false,"tcp":true,"tls":null,"relay":"tcp"`
	good := []struct{ name, body, detail, figures string }{
		{"a precall test", `{"kind":"precall","precall":{` + precall + `,"rtt_ms":12.5,"throughput_kbps":4800,"verdict":"udp_blocked","words":"  UDP is blocked on your network; the call will use the relay over TCP "}}`,
			"precall udp_blocked", `"words":"UDP is blocked on your network; the call will use the relay over TCP"`},
		{"a failed test", `{"kind":"precall","precall":{"stun":false,"public_address":"","udp":false,"tcp":false,"relay":"","rtt_ms":null,"verdict":"no_relay","words":"No connection to the relay"}}`,
			"precall no_relay", `"throughput_kbps":null`},
		{"a call", `{"kind":"call","call":{"duration_s":600,"peers":[{"role":"patient","name":" Ada ","path":"relay","rtt_ms":40,"loss_pct":0.5,"jitter_ms":3,"outgoing_kbps":1500,"quality":"good"},{"role":"guest","name":"","quality":"poor"}]}}`,
			"call, 2 peers", `"name":"Ada"`},
	}
	for _, c := range good {
		t.Run(c.name, func(t *testing.T) {
			_, figures, detail, err := checkQuality(quality(t, c.body))
			if err != nil || detail != c.detail || !strings.Contains(string(figures), c.figures) {
				t.Fatalf("checkQuality = %s, %q, %v; want %q and figures with %s", figures, detail, err, c.detail, c.figures)
			}
		})
	}

	bad := []struct{ name, body, field string }{
		{"unknown kind", `{"kind":"speedtest"}`, "kind"},
		{"no kind", `{}`, "kind"},
		{"precall missing", `{"kind":"precall"}`, "precall"},
		{"both parts", `{"kind":"precall","precall":{` + precall + `,"verdict":"good"},"call":{"peers":[]}}`, "call"},
		{"a bool missing", `{"kind":"precall","precall":{"stun":true,"public_address":"ipv4","tcp":true,"verdict":"good"}}`, "precall.udp"},
		{"an address, not a family", `{"kind":"precall","precall":{"stun":true,"public_address":"203.0.113.7","udp":true,"tcp":true,"verdict":"good"}}`, "precall.public_address"},
		{"a family without STUN", `{"kind":"precall","precall":{"stun":false,"public_address":"ipv4","udp":true,"tcp":true,"verdict":"good"}}`, "precall.public_address"},
		{"a relay that failed", `{"kind":"precall","precall":{` + strings.Replace(precall, `"relay":"tcp"`, `"relay":"udp"`, 1) + `,"verdict":"good"}}`, "precall.relay"},
		{"TLS not offered", `{"kind":"precall","precall":{` + strings.Replace(precall, `"relay":"tcp"`, `"relay":"tls"`, 1) + `,"verdict":"good"}}`, "precall.relay"},
		{"negative rtt", `{"kind":"precall","precall":{` + precall + `,"rtt_ms":-1,"verdict":"good"}}`, "precall.rtt_ms"},
		{"absurd throughput", `{"kind":"precall","precall":{` + precall + `,"throughput_kbps":1e12,"verdict":"good"}}`, "precall.throughput_kbps"},
		{"unknown verdict", `{"kind":"precall","precall":{` + precall + `,"verdict":"excellent"}}`, "precall.verdict"},
		{"words too long", `{"kind":"precall","precall":{` + precall + `,"verdict":"good","words":"` + strings.Repeat("é", MaxQualityWords+1) + `"}}`, "precall.words"},
		{"words on two lines", `{"kind":"precall","precall":{` + precall + `,"verdict":"good","words":"a\nb"}}`, "precall.words"},
		{"no peers", `{"kind":"call","call":{"peers":[]}}`, "call.peers"},
		{"too many peers", `{"kind":"call","call":{"peers":[` + strings.Repeat(`{"role":"guest","quality":"good"},`, MaxQualityPeers) + `{"role":"guest","quality":"good"}]}}`, "call.peers"},
		{"a device peer", `{"kind":"call","call":{"peers":[{"role":"device","quality":"good"}]}}`, "call.peers[0].role"},
		{"loss over 100%", `{"kind":"call","call":{"peers":[{"role":"patient","quality":"good"},{"role":"patient","loss_pct":101,"quality":"good"}]}}`, "call.peers[1].loss_pct"},
		{"unknown quality", `{"kind":"call","call":{"peers":[{"role":"patient","quality":"great"}]}}`, "call.peers[0].quality"},
		{"unknown path", `{"kind":"call","call":{"peers":[{"role":"patient","path":"smoke signals","quality":"good"}]}}`, "call.peers[0].path"},
		{"negative duration", `{"kind":"call","call":{"duration_s":-5,"peers":[{"role":"patient","quality":"good"}]}}`, "call.duration_s"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			_, _, _, err := checkQuality(quality(t, c.body))
			var se *errcode.Error
			if !errors.As(err, &se) || se.Code != errcode.BadField || !strings.HasPrefix(se.Message, c.field+" ") {
				t.Fatalf("checkQuality = %v, want bad_field naming %s first", err, c.field)
			}
		})
	}
}
