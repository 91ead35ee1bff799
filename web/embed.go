// Package web holds the browser client: plain HTML, CSS and JavaScript modules, embedded in the binary
// so that running telemed needs no build step and no separate web server.
package web

import (
	"embed"
	"io/fs"
)

//go:embed static
var files embed.FS

// Static is the client's files, rooted at the static folder.
var Static, _ = fs.Sub(files, "static")
