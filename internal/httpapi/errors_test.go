package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/telemed/telemed/errcode"
)

func TestEveryAPICodeHasAStatus(t *testing.T) {
	for _, c := range errcode.API() {
		if _, ok := statusOfCode[c]; !ok {
			t.Errorf("errcode.API() has %q but statusOfCode gives it no HTTP status", c)
		}
	}
	for c := range statusOfCode {
		if !slices.Contains(errcode.API(), c) {
			t.Errorf("statusOfCode maps %q, which errcode.API() does not list", c)
		}
	}
}

func TestFail(t *testing.T) {
	var logged bytes.Buffer
	a := &api{Options{Logger: slog.New(slog.NewTextHandler(&logged, nil))}}
	cases := []struct {
		name   string
		err    error
		status int
		code   errcode.Code
	}{
		{"a user's error", errcode.Errorf(errcode.NotFound, "no patient %s", errcode.Quote("p-1")), http.StatusNotFound, errcode.NotFound},
		{"wrapped", errors.Join(errors.New("context"), errcode.New(errcode.Conflict, "taken")), http.StatusConflict, errcode.Conflict},
		{"a code with no status is the server's fault", errcode.New(errcode.RoomFull, "full"), http.StatusInternalServerError, errcode.Internal},
		{"an internal code shows no detail either", errcode.New(errcode.Internal, "fire in the full disk"), http.StatusInternalServerError, errcode.Internal},
		{"anything else", errors.New("disk on fire"), http.StatusInternalServerError, errcode.Internal},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			logged.Reset()
			w := httptest.NewRecorder()
			a.fail(w, httptest.NewRequest("GET", "/api/v1/x", nil), c.err)
			var body struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if w.Code != c.status || body.Error.Code != string(c.code) || body.Error.Message == "" {
				t.Fatalf("%d %+v, want %d %s", w.Code, body, c.status, c.code)
			}
			if c.code == errcode.Internal {
				if bytes.Contains(w.Body.Bytes(), []byte("fire")) || bytes.Contains(w.Body.Bytes(), []byte("full")) {
					t.Fatalf("an internal error showed its detail: %s", w.Body)
				}
				if !bytes.Contains(logged.Bytes(), []byte("request failed")) {
					t.Fatalf("an internal error was not logged: %q", logged.String())
				}
			}
		})
	}
}
