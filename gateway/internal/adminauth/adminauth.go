// Package adminauth checks the admin API's bearer keys. Keys come from an
// environment value (comma-separated) and/or a key file (one key per line or
// comma-separated, e.g. a mounted Kubernetes Secret) that is re-read when it
// changes, so keys rotate without a restart: add the new key, move clients,
// remove the old one. Keys are compared in constant time as SHA-256 digests
// and never logged.
package adminauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lookalike-dev/lookalike/shared/apierror"
)

// MinKeyLen is the shortest key accepted without a warning.
const MinKeyLen = 16

// Keys is the set of valid admin keys.
type Keys struct {
	env  [][32]byte
	file string
	log  *slog.Logger
	// recheck is how often the file's stat is looked at.
	recheck time.Duration
	now     func() time.Time

	mu        sync.Mutex
	fileKeys  [][32]byte
	fileStamp string
	checked   time.Time
}

// New loads the keys from envValue and file (either may be empty). It fails
// when the file cannot be read.
func New(envValue, file string, log *slog.Logger) (*Keys, error) {
	k := &Keys{file: file, log: log, recheck: 2 * time.Second, now: time.Now}
	k.env = k.parse(envValue, "env")
	if file != "" {
		if err := k.reload(true); err != nil {
			return nil, err
		}
	}
	return k, nil
}

func (k *Keys) parse(s, from string) [][32]byte {
	var out [][32]byte
	for _, line := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		key := strings.TrimSpace(line)
		if key == "" {
			continue
		}
		if len(key) < MinKeyLen {
			k.log.Warn("admin key is short; use at least 16 random characters", "source", from, "length", len(key))
		}
		out = append(out, sha256.Sum256([]byte(key)))
	}
	return out
}

// reload re-reads the key file when its size or modification time changed.
func (k *Keys) reload(force bool) error {
	st, err := os.Stat(k.file)
	if err != nil {
		return fmt.Errorf("reading admin key file: %w", err)
	}
	stamp := fmt.Sprint(st.Size(), st.ModTime().UnixNano())
	if !force && stamp == k.fileStamp {
		return nil
	}
	b, err := os.ReadFile(k.file)
	if err != nil {
		return fmt.Errorf("reading admin key file: %w", err)
	}
	k.fileKeys, k.fileStamp = k.parse(string(b), "file"), stamp
	k.log.Info("admin keys loaded from file", "keys", len(k.fileKeys))
	return nil
}

func (k *Keys) current() [][32]byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.file != "" && k.now().Sub(k.checked) >= k.recheck {
		k.checked = k.now()
		if err := k.reload(false); err != nil {
			// Keep the last good keys; a Secret update swaps files atomically.
			k.log.Warn("admin key file not re-read; keeping the previous keys", "err", err)
		}
	}
	out := make([][32]byte, 0, len(k.env)+len(k.fileKeys))
	return append(append(out, k.env...), k.fileKeys...)
}

// Count is the number of keys now valid.
func (k *Keys) Count() int { return len(k.current()) }

// Valid reports whether presented is one of the keys. It looks at every
// key, comparing digests in constant time.
func (k *Keys) Valid(presented string) bool {
	if presented == "" {
		return false
	}
	d := sha256.Sum256([]byte(presented))
	ok := 0
	for _, h := range k.current() {
		ok |= subtle.ConstantTimeCompare(d[:], h[:])
	}
	return ok == 1
}

// Bearer returns the token of an "Authorization: Bearer <token>" header.
func Bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const p = "bearer "
	if len(h) < len(p) || !strings.EqualFold(h[:len(p)], p) {
		return "", false
	}
	t := strings.TrimSpace(h[len(p):])
	return t, t != ""
}

// Middleware refuses requests without a valid key with 401 unauthorized.
func (k *Keys) Middleware() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			c.Response().Header().Set("Cache-Control", "no-store")
			tok, ok := Bearer(c.Request())
			if !ok {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="lookalike-admin"`)
				return apierror.New(http.StatusUnauthorized, apierror.CodeUnauthorized, "admin endpoints need an Authorization: Bearer <key> header")
			}
			if !k.Valid(tok) {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="lookalike-admin", error="invalid_token"`)
				return apierror.New(http.StatusUnauthorized, apierror.CodeUnauthorized, "the admin key is not valid")
			}
			return next(c)
		}
	}
}
