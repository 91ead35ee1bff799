package source

import (
	"strings"
	"testing"
	"time"
)

func TestBuild(t *testing.T) {
	srcs, err := Build(Setup{Sims: []string{SimPulseOximeter, SimBPCuff, SimThermometer}, Seed: 3, BPInterval: 30 * time.Second,
		Stdin: strings.NewReader(""), OnBadLine: func(int, error) {}})
	if err != nil || len(srcs) != 4 {
		t.Fatalf("Build = %d sources, %v", len(srcs), err)
	}
	var names []string
	for _, s := range srcs {
		names = append(names, s.Name())
	}
	if got := strings.Join(names, ","); got != "pulse-oximeter,bp-cuff,thermometer,stdin" {
		t.Fatalf("sources %s, in the order given, stdin last", got)
	}
	if bp := srcs[1].(*Sim); bp.Interval() != 30*time.Second {
		t.Errorf("bp-cuff measures every %s, want the 30s set", bp.Interval())
	}
	if th := srcs[2].(*Sim); th.Interval() != DefaultSimInterval(SimThermometer) {
		t.Errorf("thermometer measures every %s, want its default", th.Interval())
	}
	if _, err := Build(Setup{Sims: []string{"glucometer"}}); err == nil {
		t.Error("an unknown simulated device was built")
	}
	if srcs, err := Build(Setup{}); err != nil || len(srcs) != 0 {
		t.Errorf("nothing to measure with: %d sources, %v", len(srcs), err)
	}
	if SeedOf("d_1") != SeedOf("d_1") || SeedOf("d_1") == SeedOf("d_2") {
		t.Error("a device's seed must be the same each run and differ from another device's")
	}
}
