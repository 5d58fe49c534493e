package adminauth

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lookalike-dev/lookalike/shared/apierror"
)

const (
	envKey1 = "env-key-one-0123456789"
	envKey2 = "env-key-two-0123456789"
	fileOld = "file-key-old-0123456789"
	fileNew = "file-key-new-0123456789"
)

func TestKeysAndRotation(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	path := filepath.Join(t.TempDir(), "admin-keys")
	if err := os.WriteFile(path, []byte(fileOld+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := New(envKey1+" , "+envKey2, path, log)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	k.now = func() time.Time { return clock }
	check := func(stage string, want map[string]bool) {
		t.Helper()
		for key, ok := range want {
			if got := k.Valid(key); got != ok {
				t.Errorf("%s: Valid(%q) = %v, want %v", stage, key, got, ok)
			}
		}
	}
	check("start", map[string]bool{envKey1: true, envKey2: true, fileOld: true, fileNew: false, "": false,
		envKey1 + "x": false, envKey1[:len(envKey1)-1]: false, strings.ToUpper(envKey1): false})

	// Rotate the file: new key in, old key out (as a Secret update does).
	if err := os.WriteFile(path, []byte(fileNew+", \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(path, clock.Add(time.Minute), clock.Add(time.Minute))
	clock = clock.Add(3 * time.Second)
	check("rotated", map[string]bool{fileOld: false, fileNew: true, envKey1: true})

	// A vanished file keeps the last good keys.
	os.Remove(path)
	clock = clock.Add(3 * time.Second)
	check("file gone", map[string]bool{fileNew: true})

	for _, key := range []string{envKey1, envKey2, fileOld, fileNew} {
		if strings.Contains(logs.String(), key) {
			t.Fatalf("log contains a key: %s", logs.String())
		}
	}
	if _, err := New("", filepath.Join(t.TempDir(), "missing"), log); err == nil {
		t.Fatal("missing key file accepted")
	}
}

func TestMiddleware(t *testing.T) {
	k, err := New(envKey1, "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, header string
		want         int
	}{
		{"missing", "", 401},
		{"wrong", "Bearer nope-nope-nope-nope", 401},
		{"not bearer", "Basic " + envKey1, 401},
		{"empty bearer", "Bearer ", 401},
		{"right", "Bearer " + envKey1, 200},
		{"scheme case-insensitive", "bearer " + envKey1, 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := echo.New()
			req := httptest.NewRequest(http.MethodPost, "/v1/products", nil)
			if c.header != "" {
				req.Header.Set("Authorization", c.header)
			}
			rec := httptest.NewRecorder()
			err := k.Middleware()(func(c echo.Context) error { return c.NoContent(200) })(e.NewContext(req, rec))
			status := rec.Code
			if err != nil {
				ae, ok := apierror.As(err)
				if !ok || ae.Code != apierror.CodeUnauthorized {
					t.Fatalf("error %v", err)
				}
				status = ae.Status
				if rec.Header().Get("WWW-Authenticate") == "" {
					t.Fatal("no WWW-Authenticate header")
				}
			}
			if status != c.want {
				t.Fatalf("status %d, want %d", status, c.want)
			}
		})
	}
}
