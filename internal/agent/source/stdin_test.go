package source

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/telemed/telemed/vitals"
)

func TestLineSource(t *testing.T) {
	now := time.Date(2026, 11, 24, 10, 1, 0, 0, time.UTC)
	input := strings.Join([]string{
		`{"code": "8867-4", "value": 72, "unit": "/min", "time": "2026-11-24T10:00:00.250Z"}`,
		``,
		`{"code": "8867-4", "value": 72, "unit": "bpm", "time": "2026-11-24T10:00:00Z"}`,
		`not json`,
		`{"code": "2708-6", "value": "97", "unit": "%", "time": "2026-11-24T10:00:00Z"}`,
		`{"code": "2708-6", "value": 97, "unit": "%", "time": "yesterday"}`,
		`{"code": "2708-6", "value": 97, "unit": "%", "time": "2026-11-24T10:00:00Z"} {"code": "x"}`,
		`{"code": "8310-5", "value": 36.8, "unit": "Cel", "time": "2026-11-24T11:00:00Z"}`,
		`{"code": "85354-9", "time": "2026-11-24T10:00:00Z", "components": [{"code": "8480-6", "value": 128, "unit": "mm[Hg]"}, {"code": "8462-4", "value": 82, "unit": "mm[Hg]"}]}` + "\r",
		`{"code": "131329", "unit": "mV", "time": "2026-11-24T10:00:00Z", "period_ms": 4, "samples": [0.01, 0.02, 0.9, -0.2]}`,
		`{"code": "9279-1", "value": 16, "unit": "/min", "time": "2026-11-24T10:00:05Z"` + strings.Repeat(" ", MaxLine) + `}`,
		`[]`,
		`{"code": "9279-1", "value": 16, "unit": "/min", "time": "2026-11-24T10:00:05Z"}`, // no newline at the end
	}, "\n")
	var got []vitals.Reading
	bad := map[int]string{}
	src := &LineSource{R: strings.NewReader(input), Now: func() time.Time { return now },
		OnBadLine: func(n int, err error) { bad[n] = err.Error() }}
	if err := src.Run(context.Background(), func(r vitals.Reading) { got = append(got, r) }); err != nil {
		t.Fatal(err)
	}
	var codes []string
	for _, r := range got {
		codes = append(codes, r.Code)
	}
	if fmt.Sprint(codes) != "[8867-4 85354-9 131329 9279-1]" {
		t.Errorf("readings %v", codes)
	}
	for line, want := range map[int]string{
		3: `unit must be "/min"`, 4: "not JSON", 5: "field value must be a number, not a JSON string", 6: "parsing time",
		7: "more than one JSON value", 8: "in the future", 11: "longer than 1048576 bytes", 12: "not a reading",
	} {
		if !strings.Contains(bad[line], want) {
			t.Errorf("line %d: reported %q, want %q", line, bad[line], want)
		}
		delete(bad, line)
	}
	if len(bad) > 0 {
		t.Errorf("other lines reported: %v", bad)
	}
}

// A source on an input that never ends stops with its context (when its read returns).
func TestLineSourceStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	src := &LineSource{R: strings.NewReader(strings.Repeat("{}\n", 1000))}
	n := 0
	src.OnBadLine = func(int, error) {
		if n++; n == 10 {
			cancel()
		}
	}
	src.Run(ctx, func(vitals.Reading) {})
	if n != 10 {
		t.Errorf("read %d lines after the context ended", n)
	}
}
