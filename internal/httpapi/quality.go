package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/telemed/telemed/internal/consultations"
	"github.com/telemed/telemed/protocol"
)

// Quality is what the connection test and call quality endpoints need (consultations.Service has it).
type Quality interface {
	ConnectionTestUser(ctx context.Context, by consultations.Caller, consultationID string) (string, error)
	ReportQuality(ctx context.Context, by consultations.Caller, consultationID string, in consultations.QualityInput) (consultations.QualityView, error)
	QualityReports(ctx context.Context, by consultations.Caller, consultationID string) ([]consultations.QualityView, error)
}

// TestICEServers returns the ICE servers of a connection test, with a TURN credential naming user,
// and when that credential stops starting allocations (zero when there is no TURN server).
type TestICEServers func(user string) (servers []protocol.ICEServer, expires time.Time)

// testICEAnswer is the answer of GET .../ice-servers. Its JSON form is part of the public API.
type testICEAnswer struct {
	ICEServers         []protocol.ICEServer `json:"ice_servers"`
	ICETransportPolicy string               `json:"ice_transport_policy"`
	ExpiresAt          *time.Time           `json:"expires_at"`
}

func (a *api) qualityRoutes(mux *http.ServeMux) {
	if a.Quality == nil {
		return
	}
	mux.HandleFunc("GET /api/v1/consultations/{id}/ice-servers", a.providerOrLink(a.testICEServers))
	mux.HandleFunc("POST /api/v1/consultations/{id}/quality", a.providerOrLink(a.reportQuality))
	mux.HandleFunc("GET /api/v1/consultations/{id}/quality", a.providerOrLink(a.qualityReports))
}

func (a *api) testICEServers(w http.ResponseWriter, r *http.Request, by consultations.Caller) {
	user, err := a.Quality.ConnectionTestUser(r.Context(), by, r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	answer := testICEAnswer{ICEServers: []protocol.ICEServer{}, ICETransportPolicy: a.ICETransportPolicy}
	if a.TestICEServers != nil {
		var expires time.Time
		answer.ICEServers, expires = a.TestICEServers(user)
		if !expires.IsZero() {
			answer.ExpiresAt = &expires
		}
	}
	writeJSON(w, http.StatusOK, answer)
}

func (a *api) reportQuality(w http.ResponseWriter, r *http.Request, by consultations.Caller) {
	var in consultations.QualityInput
	if err := decode(r, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := a.Quality.ReportQuality(r.Context(), by, r.PathValue("id"), in)
	a.reply(w, r, http.StatusCreated, v, err)
}

func (a *api) qualityReports(w http.ResponseWriter, r *http.Request, by consultations.Caller) {
	id := r.PathValue("id")
	list, err := a.Quality.QualityReports(r.Context(), by, id)
	a.reply(w, r, http.StatusOK, map[string]any{"consultation_id": id, "reports": list}, err)
}
