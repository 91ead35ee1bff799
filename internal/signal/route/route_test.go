package route_test

import (
	"testing"

	"github.com/telemed/telemed/internal/signal/route"
	"github.com/telemed/telemed/internal/signal/route/routetest"
)

func TestLocal(t *testing.T) {
	routetest.Run(t, func(t *testing.T) (route.Router, route.Router) {
		r := route.NewLocal()
		return r, r
	})
}

func TestLocalSurvivesExportImport(t *testing.T) {
	r := route.NewLocal()
	s := &routetest.Sender{}
	r.Attach("p", s, []byte(`{}`), 0)
	r.Send("p", []byte(`{"type":"a"}`))
	r.Send("p", []byte(`{"type":"b"}`))
	b, err := r.Export()
	if err != nil {
		t.Fatal(err)
	}
	after := route.NewLocal()
	if err := after.Import(b); err != nil {
		t.Fatal(err)
	}
	s2 := &routetest.Sender{}
	after.Attach("p", s2, []byte(`{}`), 1)
	after.Send("p", []byte(`{"type":"c"}`))
	got := s2.Messages()
	want := []string{`{}`, `{"seq":2,"type":"b"}`, `{"seq":3,"type":"c"}`}
	if len(got) != 3 || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("after a restart: %q, want %q", got, want)
	}
}
