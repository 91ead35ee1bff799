package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestOriginDNSRebinding: a page on evil.example, a name its owner points at the server's address,
// sends evil.example as both Origin and Host. The server trusts neither: the socket and a sign-in
// are refused with bad_origin, while its own origin and programs without Origin still get through.
func TestOriginDNSRebinding(t *testing.T) {
	e := startServer(t, serverOptions())
	ctx := ctxTimeout(t, 20*time.Second)
	_, port, _ := net.SplitHostPort(e.srv.Addr().String())
	evil := "http://evil.example:" + port
	// Every connection goes to the server, whatever name the URL holds, as a rebound DNS answer does.
	rebound := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, e.srv.Addr().String())
		}}}

	t.Run("websocket", func(t *testing.T) {
		ws, resp, err := websocket.Dial(ctx, "ws://evil.example:"+port+"/ws",
			&websocket.DialOptions{HTTPClient: rebound, HTTPHeader: http.Header{"Origin": {evil}}})
		if err == nil {
			ws.CloseNow()
		}
		wantBadOrigin(t, err, resp)
		ws, _, err = websocket.Dial(ctx, "ws://evil.example:"+port+"/ws", &websocket.DialOptions{HTTPClient: rebound})
		if err != nil {
			t.Fatalf("a program without Origin: %v", err)
		}
		ws.CloseNow()
	})

	t.Run("sign-in", func(t *testing.T) {
		creds := `{"email":"grace@clinic.example","password":"` + testPassword + `"}`
		signIn := func(url, origin string) *http.Response {
			req, _ := http.NewRequestWithContext(ctx, "POST", url+"/api/v1/session", strings.NewReader(creds))
			req.Header.Set("Content-Type", "application/json")
			if origin != "" {
				req.Header.Set("Origin", origin)
			}
			resp, err := rebound.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { resp.Body.Close() })
			return resp
		}
		wantBadOrigin(t, nil, signIn(evil, evil))
		if resp := signIn(e.srv.BaseURL(), e.srv.BaseURL()); resp.StatusCode != http.StatusOK {
			t.Errorf("sign-in from the server's own origin: %s", resp.Status)
		}
		if resp := signIn(evil, ""); resp.StatusCode != http.StatusOK {
			t.Errorf("sign-in by a program without Origin: %s", resp.Status)
		}
	})
}

// wantBadOrigin fails unless resp is a 403 with the error code bad_origin.
func wantBadOrigin(t *testing.T, err error, resp *http.Response) {
	t.Helper()
	if resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("err=%v resp=%v, want 403 bad_origin", err, resp)
	}
	body, _ := io.ReadAll(resp.Body)
	var b struct{ Error struct{ Code string } }
	if json.Unmarshal(body, &b); b.Error.Code != "bad_origin" {
		t.Fatalf("body %q, want error code bad_origin", body)
	}
}
