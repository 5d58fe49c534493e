package adminkey

import (
	"bytes"
	"log/slog"
	"net"
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
	k, err := New(Config{Keys: envKey1 + " , " + envKey2, File: path}, log)
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
	if _, err := New(Config{File: filepath.Join(t.TempDir(), "missing")}, log); err == nil {
		t.Fatal("missing key file accepted")
	}
}

// call runs the middleware on one request from ip and returns the status
// and the error code.
func call(t *testing.T, k *Keys, ip, auth string) (int, string) {
	t.Helper()
	e := echo.New()
	req := httptest.NewRequest(http.MethodPost, "/v1/products", nil)
	req.RemoteAddr = net.JoinHostPort(ip, "40000")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	err := k.Middleware()(func(c echo.Context) error { return c.NoContent(200) })(e.NewContext(req, rec))
	if err == nil {
		return rec.Code, ""
	}
	ae, ok := apierror.As(err)
	if !ok {
		t.Fatalf("error %v is not an API error", err)
	}
	if ae.Status == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") == "" {
		t.Fatal("401 without WWW-Authenticate")
	}
	return ae.Status, ae.Code
}

func TestMiddleware(t *testing.T) {
	k, err := New(Config{Keys: "old-key-0123456789,new-key-0123456789"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, header string
		want         int
	}{
		{"missing", "", 401},
		{"wrong", "Bearer nope-nope-nope-nope", 401},
		{"not bearer", "Basic old-key-0123456789", 401},
		{"empty bearer", "Bearer ", 401},
		{"old key of the rotation list", "Bearer old-key-0123456789", 200},
		{"new key of the rotation list", "Bearer new-key-0123456789", 200},
		{"both keys at once", "Bearer old-key-0123456789,new-key-0123456789", 401},
		{"scheme lower case", "bearer new-key-0123456789", 200},
		{"scheme upper case", "BEARER new-key-0123456789", 200},
		{"key in another case", "Bearer NEW-KEY-0123456789", 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if status, _ := call(t, k, "192.0.2.1", c.header); status != c.want {
				t.Fatalf("status %d, want %d", status, c.want)
			}
		})
	}
}

// A client that sent too many wrong keys is refused before its key is
// checked, even with a right one; other clients are not, and the budget
// refills with time.
func TestFailedAuthenticationsLimitedPerIP(t *testing.T) {
	const good = "Bearer good-key-0123456789"
	k, err := New(Config{Keys: "good-key-0123456789", FailuresPerMinute: 6, FailureBurst: 3}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	k.now = func() time.Time { return clock }
	steps := []struct {
		name, ip, auth string
		advance        time.Duration
		status         int
		code           string
	}{
		{"wrong 1", "198.51.100.7", "Bearer wrong", 0, 401, apierror.CodeUnauthorized},
		{"right key does not spend the budget", "198.51.100.7", good, 0, 200, ""},
		{"no header is not a guess", "198.51.100.7", "", 0, 401, apierror.CodeUnauthorized},
		{"wrong 2", "198.51.100.7", "Bearer wrong", 0, 401, apierror.CodeUnauthorized},
		{"wrong 3", "198.51.100.7", "Bearer wrong", 0, 401, apierror.CodeUnauthorized},
		{"over: wrong key", "198.51.100.7", "Bearer wrong", 0, 429, CodeTooManyFailures},
		{"over: even the right key", "198.51.100.7", good, 0, 429, CodeTooManyFailures},
		{"another client", "198.51.100.8", good, 0, 200, ""},
		{"another client's guess", "198.51.100.8", "Bearer wrong", 0, 401, apierror.CodeUnauthorized},
		{"ipv6 client", "2001:db8::1", "Bearer wrong", 0, 401, apierror.CodeUnauthorized},
		{"ipv6 same /64", "2001:db8::2", "Bearer wrong", 0, 401, apierror.CodeUnauthorized},
		{"ipv6 same /64 again", "2001:db8::3", "Bearer wrong", 0, 401, apierror.CodeUnauthorized},
		{"ipv6 /64 over", "2001:db8::4", good, 0, 429, CodeTooManyFailures},
		{"ipv6 other /64", "2001:db8:0:1::1", good, 0, 200, ""},
		{"refilled after 10 s", "198.51.100.7", good, 10 * time.Second, 200, ""},
		{"one more guess", "198.51.100.7", "Bearer wrong", 0, 401, apierror.CodeUnauthorized},
		{"and over again", "198.51.100.7", good, 0, 429, CodeTooManyFailures},
	}
	for _, s := range steps {
		clock = clock.Add(s.advance)
		status, code := call(t, k, s.ip, s.auth)
		if status != s.status || code != s.code {
			t.Fatalf("%s: %d %q, want %d %q", s.name, status, code, s.status, s.code)
		}
	}

	off, err := New(Config{Keys: "good-key-0123456789", FailuresPerMinute: -1}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		call(t, off, "198.51.100.9", "Bearer wrong")
	}
	if status, _ := call(t, off, "198.51.100.9", good); status != 200 {
		t.Fatalf("limit off: %d", status)
	}
}
