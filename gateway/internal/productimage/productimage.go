// Package productimage serves product photos for the web page: a payload's
// image reference is either a path relative to the catalog folder, opened
// through an os.Root so no path (.., absolute, symlink) can leave it, or an
// http(s) URL, fetched with safefetch so it cannot reach internal hosts.
package productimage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strings"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/safefetch"
)

// Source opens product images.
type Source struct {
	root     *os.Root
	fetcher  *safefetch.Fetcher
	maxBytes int64
}

// New opens catalogDir (empty: local files are not served). fetcher may be
// nil (URLs are not served).
func New(catalogDir string, fetcher *safefetch.Fetcher, maxBytes int64) (*Source, error) {
	s := &Source{fetcher: fetcher, maxBytes: maxBytes}
	if s.maxBytes <= 0 {
		s.maxBytes = 20 << 20
	}
	if catalogDir != "" {
		r, err := os.OpenRoot(catalogDir)
		if err != nil {
			return nil, fmt.Errorf("opening catalog dir: %w", err)
		}
		s.root = r
	}
	return s, nil
}

// Close releases the catalog folder.
func (s *Source) Close() error {
	if s.root == nil {
		return nil
	}
	return s.root.Close()
}

func notFound(ref string) *apierror.Error {
	return apierror.New(http.StatusNotFound, apierror.CodeNotFound, "product image %q is not available", ref)
}

// IsURL reports whether ref is an http(s) URL.
func IsURL(ref string) bool {
	l := strings.ToLower(ref)
	return strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "https://")
}

// Open returns the image bytes for ref and their sniffed content type.
func (s *Source) Open(ctx context.Context, ref string) ([]byte, string, error) {
	if ref == "" {
		return nil, "", notFound(ref)
	}
	if IsURL(ref) {
		if s.fetcher == nil {
			return nil, "", notFound(ref)
		}
		r, err := s.fetcher.Fetch(ctx, ref)
		if err != nil {
			return nil, "", err
		}
		return r.Body, r.ContentType, nil
	}
	if s.root == nil {
		return nil, "", notFound(ref)
	}
	f, err := s.root.Open(strings.TrimPrefix(ref, "./"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, "", notFound(ref)
		}
		// Escapes (.., absolute paths, symlinks out) land here too.
		return nil, "", apierror.Wrap(err, http.StatusNotFound, apierror.CodeNotFound, "product image %q is not available", ref)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, "", notFound(ref)
	}
	b, err := io.ReadAll(io.LimitReader(f, s.maxBytes+1))
	if err != nil {
		return nil, "", fmt.Errorf("reading product image: %w", err)
	}
	if int64(len(b)) > s.maxBytes {
		return nil, "", apierror.New(http.StatusRequestEntityTooLarge, apierror.CodePayloadTooLarge, "product image is too large to serve")
	}
	ct := http.DetectContentType(b)
	if !strings.HasPrefix(ct, "image/") {
		return nil, "", apierror.New(http.StatusUnsupportedMediaType, apierror.CodeUnsupportedMedia, "product image %q is not an image", ref)
	}
	return b, ct, nil
}
