package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"time"

	"github.com/telemed/telemed/internal/monitor"
	"github.com/telemed/telemed/internal/monitoring"
)

// maxUploadBody bounds a batch upload (docs/monitoring.md): 1000 readings, waveforms included.
const maxUploadBody = 8 << 20

// uploadReadTimeout replaces the server's read deadline for an upload, which may be a backlog sent
// over a slow mobile link once the device is authenticated.
const uploadReadTimeout = 2 * time.Minute

// Devices is what the endpoints that devices call need (monitoring.Service has it).
type Devices interface {
	// EnrollDevice redeems a code; from is the client's address, under which failures are counted.
	EnrollDevice(ctx context.Context, code, name string, from netip.Addr) (monitoring.EnrolledDevice, error)
	DeviceByToken(ctx context.Context, token string) (monitor.Device, error)
	DeviceSession(ctx context.Context, d monitor.Device, present func(consultationID string) bool) (monitoring.DeviceSession, error)
	Upload(ctx context.Context, d monitor.Device, b monitoring.Batch) (monitoring.UploadResult, error)
}

func (a *api) enrollDevice(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Code string `json:"code"`
		Name string `json:"name"`
	}
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := a.Devices.EnrollDevice(r.Context(), req.Code, req.Name, remoteAddr(r))
	a.reply(w, r, http.StatusCreated, v, err)
}

// remoteAddr is the address the request came from, as the connection says: the zero Addr if it
// cannot be read. There is no trusted-proxy setting yet, so X-Forwarded-For is ignored (a client
// could write anything there); behind a reverse proxy every client has the proxy's address, and a
// limit counted per address becomes one limit for all.
func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func (a *api) deviceSession(w http.ResponseWriter, r *http.Request, d monitor.Device) {
	v, err := a.Devices.DeviceSession(r.Context(), d, a.Present)
	a.reply(w, r, http.StatusOK, v, err)
}

func (a *api) upload(w http.ResponseWriter, r *http.Request, d monitor.Device) {
	var req struct {
		BatchID  string            `json:"batch_id"`
		Readings []json.RawMessage `json:"readings"`
	}
	if err := a.decodeLarge(w, r, &req, largeBody{limit: maxUploadBody, readTimeout: uploadReadTimeout,
		what: "the batch is too large: its body may be at most %d MiB; send fewer readings at a time"}); err != nil {
		a.fail(w, r, err)
		return
	}
	res, err := a.Devices.Upload(r.Context(), d, monitoring.Batch{ID: req.BatchID, Readings: req.Readings})
	a.reply(w, r, http.StatusOK, res, err)
}
