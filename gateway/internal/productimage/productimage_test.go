package productimage

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/lookalike-dev/lookalike/shared/apierror"
)

func TestOpenStaysInCatalogDir(t *testing.T) {
	base := t.TempDir()
	cat := filepath.Join(base, "catalog")
	os.MkdirAll(filepath.Join(cat, "images"), 0o755)
	var b bytes.Buffer
	png.Encode(&b, image.NewGray(image.Rect(0, 0, 2, 2)))
	os.WriteFile(filepath.Join(cat, "images", "a.png"), b.Bytes(), 0o644)
	os.WriteFile(filepath.Join(cat, "notes.txt"), []byte("hello"), 0o644)
	os.WriteFile(filepath.Join(base, "secret.png"), b.Bytes(), 0o644)
	os.Symlink(filepath.Join(base, "secret.png"), filepath.Join(cat, "images", "link.png"))
	s, err := New(cat, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cases := []struct {
		ref    string
		status int
	}{
		{"images/a.png", 200},
		{"./images/a.png", 200},
		{"../secret.png", 404},
		{"images/../../secret.png", 404},
		{filepath.Join(base, "secret.png"), 404},
		{"images/link.png", 404},
		{"images/missing.png", 404},
		{"images", 404},
		{"notes.txt", 415},
		{"", 404},
		{"http://example.com/a.png", 404}, // no fetcher configured
	}
	for _, c := range cases {
		t.Run(c.ref, func(t *testing.T) {
			body, ct, err := s.Open(context.Background(), c.ref)
			if c.status == 200 {
				if err != nil || ct != "image/png" || !bytes.Equal(body, b.Bytes()) {
					t.Fatalf("Open: %v %s", err, ct)
				}
				return
			}
			e, ok := apierror.As(err)
			if !ok || e.Status != c.status {
				t.Fatalf("Open(%q) = %v, want %d", c.ref, err, c.status)
			}
		})
	}
}
