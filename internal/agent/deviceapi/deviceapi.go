// Package deviceapi is a telemed server's device API as the agent speaks it: enrolling with a code
// (Enroll), the credentials that gives and where they are kept, and the server's error answers
// (APIError), told apart from a proxy's.
package deviceapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/agent/queue"
)

// requestTimeout bounds each request to the server.
const requestTimeout = 30 * time.Second

// Credentials are what enrollment gives a device: who it is, whose readings it sends, and the token
// it proves it with. They are kept in DIR/device.json, readable by its owner only.
type Credentials struct {
	Server     string    `json:"server"`
	DeviceID   string    `json:"device_id"`
	PatientID  string    `json:"patient_id"`
	Name       string    `json:"name"`
	Token      string    `json:"token"`
	EnrolledAt time.Time `json:"enrolled_at"`
	// CodeSHA256 is the SHA-256 of the enrollment code redeemed (as CodeDigest gives it), so that
	// the same --enroll given again is known for what it is; "" in credentials saved before it was.
	CodeSHA256 string `json:"code_sha256,omitempty"`
}

// CodeDigest returns the digest of an enrollment code kept in Credentials.CodeSHA256. Codes are
// compared as the server does: in capitals, without dashes or spaces.
func CodeDigest(code string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(code) {
		if r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:])
}

// EnrolledWith reports whether the credentials came from redeeming code at server. known is false
// when the credentials do not say which code they came from (saved before they did), and the
// server is the same.
func (c Credentials) EnrolledWith(server, code string) (same, known bool) {
	if c.Server != server {
		return false, true
	}
	if c.CodeSHA256 == "" {
		return false, false
	}
	return c.CodeSHA256 == CodeDigest(code), true
}

// CredentialsFile is the name of the credentials in the agent's folder.
const CredentialsFile = "device.json"

// ErrNotEnrolled is returned by LoadCredentials when the folder has no credentials.
var ErrNotEnrolled = errors.New("this device is not enrolled")

// ParseEnrollment reads what a provider gave: an enrollment link (http://host/enroll#code=K7QF-M2XD),
// which names the server too, or a bare code, which needs serverURL. A serverURL given with a link
// must be the link's server.
func ParseEnrollment(linkOrCode, serverURL string) (server, code string, err error) {
	s := strings.TrimSpace(linkOrCode)
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", "", fmt.Errorf("enrollment link %q: want http(s)://HOST/enroll#code=XXXX-XXXX, as the provider's page shows it", s)
		}
		frag, _ := url.ParseQuery(u.Fragment)
		code = frag.Get("code")
		base, ok := strings.CutSuffix(strings.TrimRight(u.Path, "/"), "/enroll")
		if !ok || code == "" {
			return "", "", fmt.Errorf("enrollment link %q has no code: want http(s)://HOST/enroll#code=XXXX-XXXX", s)
		}
		server = u.Scheme + "://" + u.Host + base
		if serverURL != "" {
			given, err := NormalizeServerURL(serverURL)
			if err != nil {
				return "", "", err
			}
			if given != server {
				return "", "", fmt.Errorf("the enrollment link is for %s, but --server says %s: leave out --server", server, given)
			}
		}
		s = code
	} else {
		if serverURL == "" {
			return "", "", errors.New("a bare enrollment code needs the server's address: add --server http(s)://HOST, or give the whole link")
		}
		server, err = NormalizeServerURL(serverURL)
		if err != nil {
			return "", "", err
		}
	}
	if s == "" || len(s) > 64 || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return "", "", fmt.Errorf("enrollment code %q: want the code the provider gave, like K7QF-M2XD", s)
	}
	return server, s, nil
}

// NormalizeServerURL checks a server's address and returns it without a trailing slash.
func NormalizeServerURL(s string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("server address %q: want http(s)://HOST[:PORT], the address telemed serve prints", s)
	}
	return u.Scheme + "://" + u.Host + strings.TrimRight(u.Path, "/"), nil
}

// Enroll redeems an enrollment code for a device token: the device becomes one of the code's
// patient's, named name (how the provider sees it). httpClient may be nil (http.DefaultClient).
func Enroll(ctx context.Context, serverURL, code, name string, httpClient *http.Client) (Credentials, error) {
	server, err := NormalizeServerURL(serverURL)
	if err != nil {
		return Credentials{}, err
	}
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	body, _ := json.Marshal(map[string]string{"code": code, "name": name})
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, server+"/api/v1/devices/enroll", bytes.NewReader(body))
	if err != nil {
		return Credentials{}, fmt.Errorf("enroll: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		return Credentials{}, fmt.Errorf("enroll at %s: cannot reach the server (is the address right, is it running?): %w", server, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Credentials{}, fmt.Errorf("enroll at %s: read the answer: %w", server, err)
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return Credentials{}, enrollError(server, code, ReadError(resp, data))
	}
	var out struct {
		Device struct {
			ID        string `json:"id"`
			PatientID string `json:"patient_id"`
			Name      string `json:"name"`
		} `json:"device"`
		Token string `json:"token"`
	}
	if err := json.Unmarshal(data, &out); err != nil || out.Token == "" || out.Device.ID == "" {
		return Credentials{}, fmt.Errorf("enroll at %s: the answer is not an enrollment (is this a telemed server?)", server)
	}
	return Credentials{Server: server, DeviceID: out.Device.ID, PatientID: out.Device.PatientID, Name: out.Device.Name,
		Token: out.Token, EnrolledAt: time.Now().UTC().Truncate(time.Second), CodeSHA256: CodeDigest(code)}, nil
}

// enrollError says what an enrollment's error answer means, and what to do.
func enrollError(server, code string, e *APIError) error {
	switch {
	case e.Telemed && e.Code == errcode.BadToken:
		return fmt.Errorf("enroll: the server refused the code %s: it is unknown, used or expired; ask the provider for a new one", code)
	case e.Telemed && e.Code == errcode.Busy:
		return fmt.Errorf("enroll at %s: too many enrollment attempts on the server; try again in a minute (%w)", server, e)
	case e.Telemed && e.Code == errcode.BadOrigin:
		return fmt.Errorf("enroll at %s: the server took the request for one from another site's page (%w). The agent sends no Origin or Sec-Fetch-Site header: a proxy in front of the server must be adding one; make it pass requests to /api/v1/ as they are", server, e)
	case e.Telemed && e.Code == errcode.BadField:
		return fmt.Errorf("enroll at %s: the server refused the code %s (%w); give the code as the provider's page shows it, like K7QF-M2XD", server, code, e)
	case e.Telemed && e.Status == http.StatusNotFound:
		return fmt.Errorf("enroll at %s: %w: is it a telemed server with remote monitoring, and the address the one it prints?", server, e)
	case e.Telemed:
		return fmt.Errorf("enroll at %s: %w", server, e)
	case e.Status == http.StatusForbidden || e.Status == http.StatusUnauthorized || e.Status == http.StatusProxyAuthRequired:
		return fmt.Errorf("enroll at %s: %w. Something in front of the server (a proxy, a firewall) refused the request before telemed saw it: let POST /api/v1/devices/enroll through to telemed", server, e)
	case e.Status == http.StatusTooManyRequests:
		return fmt.Errorf("enroll at %s: %w: something in front of the server limits requests; try again in a minute", server, e)
	default:
		return fmt.Errorf("enroll at %s: %w: is this the address of a telemed server (or is a proxy in front of it failing)?", server, e)
	}
}

// SaveCredentials writes the credentials to dir/device.json (mode 0600; dir is made 0700), whole or
// not at all.
func SaveCredentials(dir string, c Credentials) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	if err := queue.WriteFile(dir, CredentialsFile, append(data, '\n')); err != nil {
		return fmt.Errorf("save credentials in %s: %w", dir, err)
	}
	return nil
}

// LoadCredentials reads dir/device.json. Without it, the error is ErrNotEnrolled.
func LoadCredentials(dir string) (Credentials, error) {
	path := filepath.Join(dir, CredentialsFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Credentials{}, fmt.Errorf("%w (no %s): enroll it with --enroll and the link the provider gives", ErrNotEnrolled, path)
	}
	if err != nil {
		return Credentials{}, fmt.Errorf("load credentials: %w", err)
	}
	var c Credentials
	if err := json.Unmarshal(data, &c); err != nil || c.Token == "" || c.Server == "" {
		return Credentials{}, fmt.Errorf("load credentials: %s is damaged; enroll again with --enroll (a new code from the provider)", path)
	}
	return c, nil
}

// APIError is an error answer of the server: telemed's ({"error": {"code", "message"}}), or
// something else's, in front of it (a proxy's page).
type APIError struct {
	Status  int
	Code    errcode.Code
	Message string
	// Telemed is set when the answer is telemed's own error: JSON (Content-Type application/json)
	// of the shape above, with a code. Anything else came from something in front of the server, or
	// from something that is not telemed.
	Telemed bool
	// ContentType and Server are the answer's headers, to tell who answered.
	ContentType, Server string
}

// Error says what the server answered, with its code and message when it gave them.
func (e *APIError) Error() string {
	if e.Telemed {
		return fmt.Sprintf("the server answered %d %s: %s", e.Status, e.Code, e.Message)
	}
	return fmt.Sprintf("the server answered %d %s, not as telemed answers (%s)", e.Status, http.StatusText(e.Status), e.From())
}

// From describes who answered, as far as the headers tell.
func (e *APIError) From() string {
	ct := e.ContentType
	if ct == "" {
		ct = "no Content-Type"
	}
	if e.Server != "" {
		return ct + ", from " + e.Server
	}
	return ct
}

// ReadError reads a failed answer of the server: telemed's own error JSON, or what a proxy or
// anything else in the way said.
func ReadError(resp *http.Response, body []byte) *APIError {
	e := &APIError{Status: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"), Server: resp.Header.Get("Server")}
	if len(e.ContentType) > 100 {
		e.ContentType = e.ContentType[:100]
	}
	if len(e.Server) > 100 {
		e.Server = e.Server[:100]
	}
	mt, _, err := mime.ParseMediaType(e.ContentType)
	if err != nil || mt != "application/json" {
		return e
	}
	var v struct {
		Error *struct {
			Code    errcode.Code `json:"code"`
			Message string       `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &v) != nil || v.Error == nil || v.Error.Code == "" {
		return e
	}
	msg := v.Error.Message
	if len(msg) > 500 {
		msg = msg[:500] + "…"
	}
	e.Code, e.Message, e.Telemed = v.Error.Code, msg, true
	return e
}
