package vitals

import (
	"errors"
	"strings"
	"testing"

	"github.com/telemed/telemed/errcode"
)

func TestDecode(t *testing.T) {
	cases := []struct {
		name, in, want string // want: "" to decode, else a part of the message
	}{
		{"a reading", `{"code":"8867-4","value":72,"unit":"/min","time":"2026-11-24T10:00:00Z"}`, ""},
		{"not an object", `[1,2]`, "a reading must be a JSON object, not an array"},
		{"a string for a number", `{"code":"8867-4","value":"fast"}`, "value must be a number, not a string"},
		{"a number too large", `{"code":"8867-4","value":1e400}`, "value is number 1e400: too large for any reading"},
		{"a bad time", `{"code":"8867-4","time":"yesterday"}`, `time must be RFC 3339 such as "2026-11-24T10:00:00.250Z", not "yesterday"`},
		{"an unknown field", `{"code":"8867-4","colour":"red"}`, `unknown field "colour"`},
		{"truncated", `{"code":"8867-4"`, "unexpected EOF"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := Decode([]byte(c.in))
			if c.want == "" {
				if err != nil || r.Code != HeartRate || *r.Value != 72 {
					t.Fatalf("Decode = %+v, %v", r, err)
				}
				return
			}
			var ve *Error
			if !errors.As(err, &ve) || ve.Code != errcode.BadReading || !strings.HasPrefix(ve.Message, "not a reading: ") || !strings.Contains(ve.Message, c.want) {
				t.Fatalf("Decode(%s) error = %v, want bad_reading with %q", c.in, err, c.want)
			}
		})
	}
}
