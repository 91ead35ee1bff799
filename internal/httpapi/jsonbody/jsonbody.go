// Package jsonbody reads the JSON body of an API request: bounded, strict, with errors a client can
// act on.
package jsonbody

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/telemed/telemed/errcode"
)

// ErrTooLarge is Decode's answer to a body over its limit.
var ErrTooLarge = errors.New("request body is too large")

// Decode reads a JSON body of at most limit bytes into v, returning ErrTooLarge for a longer one
// (declared or sent) and a bad_json errcode.Error for one that is not v's JSON (unknown fields
// included). An empty body leaves v as it is.
func Decode(r *http.Request, v any, limit int64) error {
	if r.ContentLength > limit {
		return ErrTooLarge
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return ErrTooLarge // a body limited further out, by http.MaxBytesReader
	}
	if err != nil {
		return &errcode.Error{Code: errcode.BadJSON, Message: "could not read the request body"}
	}
	if int64(len(body)) > limit {
		return ErrTooLarge
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		msg := err.Error()
		var se *json.SyntaxError
		if errors.As(err, &se) {
			msg = fmt.Sprintf("%s (at byte %d)", msg, se.Offset)
		}
		return &errcode.Error{Code: errcode.BadJSON, Message: "request body is not the expected JSON: " + msg}
	}
	return nil
}
