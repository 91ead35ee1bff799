package consult

import "testing"

func TestTrimChatText(t *testing.T) {
	for in, want := range map[string]string{
		"  hello \n":          "hello",
		"\u0085":              "\u0085", // JavaScript's trim keeps NEL
		"\uFEFFhi\uFEFF":      "hi",     // and removes the byte order mark
		"\u00a0\u2028x\u3000": "x",
		"\u200b":              "\u200b", // zero width space is not white space
	} {
		if got := TrimChatText(in); got != want {
			t.Errorf("TrimChatText(%q) = %q, want %q", in, got, want)
		}
	}
}
