package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/httpapi"
	"github.com/telemed/telemed/internal/monitor"
	"github.com/telemed/telemed/internal/monitoring"
)

// pulseOx is the device the tests' device requests come from.
var pulseOx = monitor.Device{ID: "dev-1", PatientID: "pat-1", Name: "Nonin 3230"}

const deviceToken = "td_pulseox"

// knownDevice is Devices' DeviceByToken for a server that knows only pulseOx.
func knownDevice(_ context.Context, token string) (monitor.Device, error) {
	if token != deviceToken {
		return monitor.Device{}, errcode.New(errcode.Unauthenticated, "the device token is unknown or revoked")
	}
	return pulseOx, nil
}

// deviceRequest returns a request as the device agent sends it, with authz as Authorization.
func deviceRequest(method, target, body, authz string) *http.Request {
	r := request(method, target, body)
	r.Header.Del("Authorization")
	if authz != "" {
		r.Header.Set("Authorization", authz)
	}
	return r
}

func TestDeviceAuthentication(t *testing.T) {
	var asked []string
	dev := &fakeDevices{byToken: func(ctx context.Context, token string) (monitor.Device, error) {
		asked = append(asked, token)
		return knownDevice(ctx, token)
	}}
	h := newAPI(t, httpapi.Options{Devices: dev})
	for _, authz := range []string{"", "Basic " + deviceToken, "Bearer", deviceToken, "Bearer td_revoked"} {
		for _, target := range []string{"GET /api/v1/device", "POST /api/v1/observations"} {
			t.Run(target+" "+authz, func(t *testing.T) {
				method, path, _ := strings.Cut(target, " ")
				wantError(t, serve(h, deviceRequest(method, path, `{"batch_id":"b-1","readings":[]}`, authz)),
					http.StatusUnauthorized, errcode.Unauthenticated)
			})
		}
	}
	if want := []string{"td_revoked", "td_revoked"}; !reflect.DeepEqual(asked, want) {
		t.Errorf("DeviceByToken asked for %q, want %q: only a Bearer token is looked up", asked, want)
	}
}

func TestDeviceSession(t *testing.T) {
	var presentIn string
	dev := &fakeDevices{byToken: knownDevice, session: func(_ context.Context, d monitor.Device, present func(string) bool) (monitoring.DeviceSession, error) {
		if d != pulseOx {
			t.Errorf("session of %+v, want pulseOx", d)
		}
		if !present("c-1") || present("c-2") {
			t.Error("DeviceSession was not given Options.Present")
		}
		return monitoring.DeviceSession{Device: monitoring.DeviceView{ID: d.ID}}, nil
	}}
	h := newAPI(t, httpapi.Options{Devices: dev, Present: func(id string) bool { presentIn = id; return id == "c-1" }})
	var s monitoring.DeviceSession
	decodeBody(t, serve(h, deviceRequest("GET", "/api/v1/device", "", "Bearer "+deviceToken)), http.StatusOK, &s)
	if s.Device.ID != pulseOx.ID || presentIn == "" {
		t.Errorf("answered %+v", s)
	}
}

func TestUploadPassesReadingsAsSent(t *testing.T) {
	raw := []string{
		`{"code":"8867-4","value":72,"unit":"/min","time":"2026-11-24T10:00:00.250Z"}`,
		`{"code":"8867-4","value":"high","unit":"/min","time":"2026-11-24T10:00:01Z"}`,
		`{"code":"2708-6","value":97,"unit":"%","time":"2026-11-24T10:00:02Z","colour":"red"}`,
		`{"code":"2708-6", "value":98, "unit":"%", "time":"2026-11-24T10:00:03Z"}`,
	}
	var got monitoring.Batch
	dev := &fakeDevices{byToken: knownDevice, upload: func(_ context.Context, d monitor.Device, b monitoring.Batch) (monitoring.UploadResult, error) {
		if d != pulseOx {
			t.Errorf("uploaded by %+v, want pulseOx", d)
		}
		got = b
		return monitoring.UploadResult{BatchID: b.ID, Accepted: 2, Rejected: []monitoring.RejectionView{{Index: 1, Code: errcode.BadReading, Message: "no"}}}, nil
	}}
	h := newAPI(t, httpapi.Options{Devices: dev})
	body := `{"batch_id":"b-1","readings":[` + strings.Join(raw, ",\n  ") + `]}`
	var res monitoring.UploadResult
	decodeBody(t, serve(h, deviceRequest("POST", "/api/v1/observations", body, "Bearer "+deviceToken)), http.StatusOK, &res)
	if res.BatchID != "b-1" || res.Accepted != 2 || len(res.Rejected) != 1 {
		t.Errorf("answered %+v", res)
	}

	if got.ID != "b-1" || len(got.Readings) != len(raw) {
		t.Fatalf("batch %q of %d readings, want b-1 of %d", got.ID, len(got.Readings), len(raw))
	}
	// Each reading reaches the use case exactly as the device sent it (spaces and all), so that a
	// batch sent again is known by its bytes, and a malformed reading refuses only itself there.
	for i := range raw {
		if string(got.Readings[i]) != raw[i] {
			t.Errorf("reading %d arrived as %s, want %s", i, got.Readings[i], raw[i])
		}
	}
}

func TestUploadTooLarge(t *testing.T) {
	const limit = 8 << 20
	// Upload panics if called.
	h := newAPI(t, httpapi.Options{Devices: &fakeDevices{byToken: knownDevice}})
	t.Run("declared", func(t *testing.T) {
		r := deviceRequest("POST", "/api/v1/observations", `{"batch_id":"b-1","readings":[]}`, "Bearer "+deviceToken)
		r.ContentLength = limit + 1
		wantError(t, serve(h, r), http.StatusRequestEntityTooLarge, errcode.TooLarge)
	})
	t.Run("streamed", func(t *testing.T) {
		r := deviceRequest("POST", "/api/v1/observations", "", "Bearer "+deviceToken)
		r.Body = io.NopCloser(spaces(limit + 1))
		r.ContentLength = -1
		wantError(t, serve(h, r), http.StatusRequestEntityTooLarge, errcode.TooLarge)
	})
	t.Run("not JSON", func(t *testing.T) {
		r := deviceRequest("POST", "/api/v1/observations", `{"batch_id":"b-1","readings":{}}`, "Bearer "+deviceToken)
		wantError(t, serve(h, r), http.StatusBadRequest, errcode.BadJSON)
	})
}

func TestEnrollDevice(t *testing.T) {
	dev := &fakeDevices{enroll: func(_ context.Context, code, name string, from netip.Addr) (monitoring.EnrolledDevice, error) {
		// Failed attempts are counted under the address the request came from.
		if from != netip.MustParseAddr("192.0.2.1") {
			return monitoring.EnrolledDevice{}, fmt.Errorf("enrollment from %v, want the request's remote address", from)
		}
		if code != "ABCD-EFGH" {
			return monitoring.EnrolledDevice{}, errcode.New(errcode.BadToken, "the enrollment code is unknown or used")
		}
		return monitoring.EnrolledDevice{Device: monitoring.DeviceView{ID: "dev-2", Name: name}, Token: "td_new"}, nil
	}}
	h := newAPI(t, httpapi.Options{Devices: dev})
	// The agent is a program: no Origin, no Authorization.
	var v monitoring.EnrolledDevice
	decodeBody(t, serve(h, deviceRequest("POST", "/api/v1/devices/enroll", `{"code":"ABCD-EFGH","name":"Kitchen pulse oximeter"}`, "")), http.StatusCreated, &v)
	if v.Token != "td_new" || v.Device.ID != "dev-2" || v.Device.Name != "Kitchen pulse oximeter" {
		t.Errorf("answered %+v", v)
	}
	wantError(t, serve(h, deviceRequest("POST", "/api/v1/devices/enroll", `{"code":"WXYZ-WXYZ","name":"x"}`, "")), http.StatusForbidden, errcode.BadToken)
}
