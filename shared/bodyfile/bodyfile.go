// Package bodyfile keeps a request body in a file in memory (/dev/shm when
// there is one) and sends it with sendfile(2). A benchmark's load generator
// shares the cores with the services it measures; replaying a body file,
// as load tools do, makes each request cost it next to nothing, as a client
// on another machine costs the services nothing.
package bodyfile

import (
	"context"
	"fmt"
	"net/http"
	"os"
)

// File is a body written once and replayed.
type File struct {
	Path string
	Size int64
}

// Write stores body in a new file in memory; Remove deletes it.
func Write(body []byte) (File, error) {
	dir := "/dev/shm"
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		dir = "" // the temp folder
	}
	f, err := os.CreateTemp(dir, "lookalike-body-*")
	if err != nil {
		return File{}, fmt.Errorf("writing a request body file: %w", err)
	}
	if _, err := f.Write(body); err != nil {
		f.Close()
		os.Remove(f.Name())
		return File{}, fmt.Errorf("writing a request body file: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return File{}, fmt.Errorf("writing a request body file: %w", err)
	}
	return File{Path: f.Name(), Size: int64(len(body))}, nil
}

// Remove deletes the file.
func (f File) Remove() error { return os.Remove(f.Path) }

// NewRequest builds a request whose body is the file, with its
// Content-Length: an *os.File body goes out with sendfile(2), and the
// transport closes it.
func (f File) NewRequest(ctx context.Context, method, url, contentType string) (*http.Request, error) {
	fh, err := os.Open(f.Path)
	if err != nil {
		return nil, fmt.Errorf("opening the request body file: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, fh)
	if err != nil {
		fh.Close()
		return nil, err
	}
	req.ContentLength = f.Size
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req, nil
}
