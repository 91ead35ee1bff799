package consult

import (
	"strings"
	"unicode"
)

// TrimChatText trims a chat message or name as the browser does (JavaScript's String.prototype.trim),
// so that the browser, the Go client and the server agree on what is empty and what counts towards a
// limit. That is Unicode's white space, without U+0085 (NEL) and with U+FEFF (the byte order mark).
func TrimChatText(s string) string {
	return strings.TrimFunc(s, func(r rune) bool {
		return r == '\uFEFF' || r != '\u0085' && unicode.IsSpace(r)
	})
}
