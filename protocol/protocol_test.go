package protocol

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/telemed/telemed/errcode"
)

func TestDecode(t *testing.T) {
	cases := []struct {
		name string
		in   string
		code errcode.Code // "" for a valid message
	}{
		{"join", `{"type":"join","version":1,"consultation":"c_abc","token":"c_abc.patient.1.sig","name":" Ada "}`, ""},
		{"join wrong version", `{"type":"join","version":2,"consultation":"c_abc","token":"t"}`, errcode.UnsupportedVersion},
		{"join without consultation", `{"type":"join","version":1,"token":"t"}`, errcode.BadField},
		{"join bad consultation id", `{"type":"join","version":1,"consultation":"../etc","token":"t"}`, errcode.BadField},
		{"join control characters in name", `{"type":"join","version":1,"consultation":"c","token":"t","name":"a\u0007b"}`, errcode.BadField},
		{"join name too long", `{"type":"join","version":1,"consultation":"c","token":"t","name":"` + strings.Repeat("é", 81) + `"}`, errcode.BadField},
		{"offer", `{"type":"offer","to":"p_1","sdp":"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"}`, ""},
		{"offer without to", `{"type":"offer","sdp":"v=0"}`, errcode.BadField},
		{"answer not SDP", `{"type":"answer","to":"p_1","sdp":"<script>"}`, errcode.BadField},
		{"candidate", `{"type":"candidate","to":"p_1","candidate":{"candidate":"candidate:1 1 udp 1 192.0.2.1 5000 typ host","sdp_mid":"0"}}`, ""},
		{"end of candidates", `{"type":"candidate","to":"p_1","candidate":{"candidate":"","sdp_mline_index":0}}`, ""},
		{"candidate without mid", `{"type":"candidate","to":"p_1","candidate":{"candidate":"candidate:1"}}`, errcode.BadField},
		{"candidate not a candidate", `{"type":"candidate","to":"p_1","candidate":{"candidate":"hello","sdp_mid":"0"}}`, errcode.BadField},
		{"candidate missing", `{"type":"candidate","to":"p_1"}`, errcode.BadField},
		{"admit", `{"type":"admit","peer":"p_1"}`, ""},
		{"admit without peer", `{"type":"admit"}`, errcode.BadField},
		{"leave", `{"type":"leave"}`, ""},
		{"remove", `{"type":"remove","peer":"p_1"}`, ""},
		{"remove without peer", `{"type":"remove"}`, errcode.BadField},
		{"media", `{"type":"media","audio":true,"video":false,"screen":false}`, ""},
		{"media missing screen", `{"type":"media","audio":true,"video":false}`, errcode.BadField},
		{"media not a bool", `{"type":"media","audio":"yes","video":false,"screen":false}`, errcode.BadField},
		{"allow_share", `{"type":"allow_share","peer":"p_1","allowed":false}`, ""},
		{"allow_share without allowed", `{"type":"allow_share","peer":"p_1"}`, errcode.BadField},
		{"ping with id", `{"type":"ping","id":42}`, ""},
		{"unknown", `{"type":"subscribe"}`, errcode.UnknownType},
		{"no type", `{}`, errcode.UnknownType},
		{"array", `[]`, errcode.BadJSON},
		{"truncated", `{"type":"ping"`, errcode.BadJSON},
		{"trailing garbage", `{"type":"ping"} x`, errcode.BadJSON},
		{"not UTF-8", "{\"type\":\"\xff\"}", errcode.BadJSON},
		{"wrong field type", `{"type":"admit","peer":5,"id":9}`, errcode.BadField},
		{"too large", `{"type":"ping","x":"` + strings.Repeat("a", MaxMessageSize) + `"}`, errcode.TooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Decode([]byte(tc.in))
			switch {
			case tc.code == "" && err != nil:
				t.Fatalf("Decode: %v, want ok", err)
			case tc.code != "" && err == nil:
				t.Fatalf("Decode = %+v, want error %s", m, tc.code)
			case tc.code != "" && err.Code != tc.code:
				t.Fatalf("error code %s (%s), want %s", err.Code, err.Message, tc.code)
			case err != nil && err.Message == "":
				t.Fatal("error without a message for people")
			}
		})
	}
	m, _ := Decode([]byte(`{"type":"join","version":1,"consultation":"c_abc","token":"t","name":"  Ada  "}`))
	if m.Name != "Ada" {
		t.Errorf("name %q, want trimmed", m.Name)
	}
	_, err := Decode([]byte(`{"type":"admit","peer":5,"id":9}`))
	if err.RefID == nil || *err.RefID != 9 {
		t.Errorf("ref id %v, want 9 echoed from the bad message", err.RefID)
	}
}

// FuzzDecode feeds the decoder arbitrary bytes, as any client may. It must never panic, and whatever it
// accepts must be a well-formed message that survives a round trip unchanged.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"type":"join","version":1,"consultation":"c_abc","token":"c_abc.patient.1.sig","name":"Ada","resume":"r_x"}`,
		`{"type":"offer","to":"p_1","sdp":"v=0\r\n","id":3}`,
		`{"type":"candidate","to":"p_1","candidate":{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","sdp_mid":"0","sdp_mline_index":0,"username_fragment":"u"}}`,
		`{"type":"admit","peer":"p_1"}`, `{"type":"leave"}`, `{"type":"remove","peer":"p_2"}`,
		`{"type":"media","audio":true,"video":false,"screen":true}`, `{"type":"allow_share","peer":"p_3","allowed":true}`, `{"type":"ping"}`, `{"type":"x"}`, `[]`, `{"type":`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			if err.Code == "" || err.Message == "" {
				t.Fatalf("error without code or message: %+v", err)
			}
			return
		}
		switch m.Type {
		case TypeJoin, TypeAdmit, TypeDecline, TypeOffer, TypeAnswer, TypeCandidate, TypeLeave, TypePing,
			TypeRemove, TypeMedia, TypeAllowShare:
		default:
			t.Fatalf("accepted unknown type %q", m.Type)
		}
		if (m.Type == TypeOffer || m.Type == TypeAnswer || m.Type == TypeCandidate) && !validID(m.To) {
			t.Fatalf("accepted %s with bad to %q", m.Type, m.To)
		}
		if m.Type == TypeCandidate && m.Candidate == nil {
			t.Fatal("accepted candidate without candidate")
		}
		if m.Type == TypeMedia && (m.Audio == nil || m.Video == nil || m.Screen == nil) {
			t.Fatal("accepted media without its three states")
		}
		again, merr := json.Marshal(m)
		if merr != nil {
			t.Fatalf("re-encode: %v", merr)
		}
		m2, err2 := Decode(again)
		if err2 != nil {
			t.Fatalf("accepted %q but not its re-encoding %q: %v", data, again, err2)
		}
		b1, _ := json.Marshal(m2)
		if string(b1) != string(again) {
			t.Fatalf("round trip changed the message: %s -> %s", again, b1)
		}
	})
}
