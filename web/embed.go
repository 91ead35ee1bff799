// Package web holds the browser client: plain HTML, CSS and JavaScript modules, embedded in the binary
// so that running telemed needs no build step and no separate web server.
package web

import (
	"embed"
	"io/fs"
)

//go:embed static
var files embed.FS

// Static is the client's files, rooted at the static folder. Only files open: a folder is
// fs.ErrNotExist, so that a file server on it answers 404 where it would list the folder's contents.
var Static fs.FS = filesOnly{sub(files, "static")}

func sub(fsys fs.FS, dir string) fs.FS {
	s, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err) // dir is a constant that go:embed has checked
	}
	return s
}

// filesOnly is an FS whose folders do not open.
type filesOnly struct{ fs.FS }

// Open opens name if it is a file.
func (f filesOnly) Open(name string) (fs.File, error) {
	file, err := f.FS.Open(name)
	if err != nil {
		return nil, err
	}
	if fi, err := file.Stat(); err != nil || fi.IsDir() {
		file.Close()
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return file, nil
}
