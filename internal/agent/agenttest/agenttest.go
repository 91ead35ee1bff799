// Package agenttest is a stand-in for a telemed server's device API, for the device agent's tests and
// the command's: enrollment codes that work once, as the real server's do, and uploads that are all
// accepted. It counts enrollment attempts, so that a test sees a code redeemed twice.
package agenttest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// EnrollServer serves POST /api/v1/devices/enroll and POST /api/v1/observations on loopback until the
// test ends. The n-th code redeemed enrolls device "d_<n><first 4 characters of the code>".
type EnrollServer struct {
	*httptest.Server
	mu       sync.Mutex
	codes    map[string]bool // code -> redeemed
	tries    int
	redeemed int
}

// NewEnrollServer starts an EnrollServer whose codes are codes, each good once.
func NewEnrollServer(t testing.TB, codes ...string) *EnrollServer {
	t.Helper()
	e := &EnrollServer{codes: map[string]bool{}}
	for _, c := range codes {
		e.codes[c] = false
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/devices/enroll", e.enroll)
	mux.HandleFunc("POST /api/v1/observations", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"batch_id":"x","accepted":1,"duplicate":false,"rejected":[],"alerts":[]}`)
	})
	e.Server = httptest.NewServer(mux)
	t.Cleanup(e.Close)
	return e
}

func (e *EnrollServer) enroll(w http.ResponseWriter, r *http.Request) {
	var req struct{ Code, Name string }
	json.NewDecoder(r.Body).Decode(&req)
	code := strings.ToUpper(strings.ReplaceAll(req.Code, " ", "-"))
	e.mu.Lock()
	e.tries++
	used, ok := e.codes[code]
	e.codes[code] = true
	if ok && !used {
		e.redeemed++
	}
	n := e.redeemed
	e.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if !ok || used {
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"error":{"code":"bad_token","message":"this enrollment code is unknown, has been used, or has expired"}}`)
		return
	}
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"device":{"id":"d_%d%s","patient_id":"p-1","name":%q},"token":"td_%s"}`, n, code[:4], req.Name, code)
}

// Attempts is how many enrollments were tried, redeemed or not.
func (e *EnrollServer) Attempts() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.tries
}

// Link is the enrollment link of code, as the provider's page shows it.
func (e *EnrollServer) Link(code string) string { return e.URL + "/enroll#code=" + code }
