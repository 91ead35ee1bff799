package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/monitor"
	"github.com/telemed/telemed/internal/monitoring"
	"github.com/telemed/telemed/vitals"
)

// maxUploadBody bounds a batch upload (docs/monitoring.md): 1000 readings, waveforms included.
const maxUploadBody = 8 << 20

// uploadReadTimeout replaces the server's read deadline for an upload, which may be a backlog sent
// over a slow mobile link once the device is authenticated.
const uploadReadTimeout = 2 * time.Minute

// Devices is what the endpoints that devices call need (monitoring.Service has it).
type Devices interface {
	EnrollDevice(ctx context.Context, code, name string) (monitoring.EnrolledDevice, error)
	DeviceByToken(ctx context.Context, token string) (monitor.Device, error)
	DeviceSession(ctx context.Context, d monitor.Device, present func(consultationID string) bool) (monitoring.DeviceSession, error)
	Upload(ctx context.Context, d monitor.Device, b monitoring.Batch) (monitoring.UploadResult, error)
}

// device wraps a handler that needs a device token.
func (a *api) device(h func(http.ResponseWriter, *http.Request, monitor.Device)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			writeError(w, http.StatusUnauthorized, errcode.Unauthenticated, "send the device token as \"Authorization: Bearer td_...\"")
			return
		}
		d, err := a.Devices.DeviceByToken(r.Context(), strings.TrimSpace(token))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		h(w, r, d)
	}
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
	v, err := a.Devices.EnrollDevice(r.Context(), req.Code, req.Name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, v)
}

func (a *api) deviceSession(w http.ResponseWriter, r *http.Request, d monitor.Device) {
	v, err := a.Devices.DeviceSession(r.Context(), d, a.Present)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (a *api) upload(w http.ResponseWriter, r *http.Request, d monitor.Device) {
	if err := http.NewResponseController(w).SetReadDeadline(time.Now().Add(uploadReadTimeout)); err != nil {
		a.Logger.Debug("could not extend the read deadline for an upload", "err", err)
	}
	var req struct {
		BatchID  string            `json:"batch_id"`
		Readings []json.RawMessage `json:"readings"`
	}
	if err := decodeLimit(r, &req, maxUploadBody); err != nil {
		if errors.Is(err, errTooLarge) {
			err = &errcode.Error{Code: errcode.TooLarge, Message: fmt.Sprintf(
				"the batch is too large: its body may be at most %d MiB; send fewer readings at a time", maxUploadBody>>20)}
		}
		a.fail(w, r, err)
		return
	}
	res, err := a.Devices.Upload(r.Context(), d, decodeBatch(req.BatchID, req.Readings))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// decodeBatch decodes each reading of a batch on its own, so that one malformed reading refuses
// only itself.
func decodeBatch(id string, raw []json.RawMessage) monitoring.Batch {
	b := monitoring.Batch{ID: id, BodyHash: monitoring.BodyHash(raw), Readings: make([]monitoring.SentReading, len(raw))}
	for i, r := range raw {
		b.Readings[i].Reading, b.Readings[i].Err = vitals.Decode(r)
	}
	return b
}
