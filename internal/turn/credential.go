package turn

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // the TURN REST API form that coturn accepts is HMAC-SHA1
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Credential is a time-limited TURN credential in the TURN REST API form that coturn's
// use-auth-secret accepts: Username is "<unix-expiry>:<user>", Password is
// base64(HMAC-SHA1(secret, Username)).
type Credential struct {
	Username string
	Password string
	Expires  time.Time
}

// NewCredential returns a credential for user that works until expires. Any TURN server that shares
// secret accepts it: the embedded one or a coturn fleet.
func NewCredential(secret []byte, user string, expires time.Time) Credential {
	username := strconv.FormatInt(expires.Unix(), 10) + ":" + user
	return Credential{Username: username, Password: restPassword(secret, username), Expires: expires.Truncate(time.Second)}
}

func restPassword(secret []byte, username string) string {
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// ParseUsername splits a TURN REST username into its expiry and user.
func ParseUsername(username string) (expires time.Time, user string, err error) {
	ts, user, ok := strings.Cut(username, ":")
	if !ok || user == "" {
		return time.Time{}, "", fmt.Errorf("username %q: want <unix-expiry>:<user>", username)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sec <= 0 {
		return time.Time{}, "", fmt.Errorf("username %q: expiry is not a unix time", username)
	}
	return time.Unix(sec, 0), user, nil
}
