package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/monitoring"
)

// eventsKeepAlive is how often an idle event stream sends a comment, so that proxies keep it open
// and a page notices a dead server.
const eventsKeepAlive = 20 * time.Second

// Events is what a patient's event stream needs (monitoring.Service has it).
type Events interface {
	ProviderPatient(ctx context.Context, p consult.Provider, id string) (monitoring.PatientView, error)
	Subscribe(o monitoring.SubscribeOptions) (events <-chan monitoring.MonitorEvent, cancel func())
}

// patientEvents streams a patient's new alerts and readings as server-sent events.
func (a *api) patientEvents(w http.ResponseWriter, r *http.Request, c caller) {
	id := r.PathValue("id")
	if _, err := a.Events.ProviderPatient(r.Context(), c.provider, id); err != nil {
		a.fail(w, r, err)
		return
	}
	rc := http.NewResponseController(w)
	// The stream outlives the server's deadlines by design. The read deadline matters too: net/http
	// keeps reading the connection to notice a client that went away, and a read that times out
	// would end the stream after ReadTimeout.
	if err := errors.Join(rc.SetWriteDeadline(time.Time{}), rc.SetReadDeadline(time.Time{})); err != nil {
		a.Logger.Debug("could not lift the deadlines for an event stream", "err", err)
	}
	events, cancel := a.Events.Subscribe(monitoring.SubscribeOptions{PatientID: id})
	defer cancel()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": connected\n\n")
	rc.Flush()
	keepAlive := time.NewTicker(eventsKeepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keepAlive.C:
			// A session that ended or a token revoked since the stream began ends it too.
			if _, aerr := a.authenticate(r); aerr != nil {
				fmt.Fprint(w, "event: unauthenticated\ndata: {}\n\n")
				rc.Flush()
				return
			}
			fmt.Fprint(w, ": keep-alive\n\n")
		case e, ok := <-events:
			if !ok {
				return // fallen behind: the page reconnects and reloads what it missed
			}
			var v any = e.Alert
			if e.Type == monitoring.EventObservation {
				v = e.Observation
			}
			data, err := json.Marshal(v)
			if err != nil {
				a.Logger.Error("encode event", "err", err)
				continue
			}
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", e.Type, data)
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}
