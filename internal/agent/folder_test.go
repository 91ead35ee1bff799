package agent

import "testing"

func TestDefaultName(t *testing.T) {
	for _, c := range []struct {
		sims      []string
		fromStdin bool
		host      string
		want      string
	}{
		{[]string{"pulse-oximeter", "ecg"}, true, "ward-3", "Simulated pulse-oximeter, ecg"},
		{[]string{"thermometer"}, false, "", "Simulated thermometer"},
		{nil, true, "ward-3", "Device bridge on ward-3"},
		{nil, false, "ward-3", "telemed device on ward-3"},
		{nil, true, "", "telemed device"},
		{nil, false, "", "telemed device"},
	} {
		if got := DefaultName(c.sims, c.fromStdin, c.host); got != c.want {
			t.Errorf("DefaultName(%q, %v, %q) = %q, want %q", c.sims, c.fromStdin, c.host, got, c.want)
		}
	}
}
