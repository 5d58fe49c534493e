// Package adminkey checks the bearer keys of the suite's admin APIs (the
// gateway's product and rollout API, the indexer's job API). Keys come from
// a setting (comma-separated) and/or a key file (one key per line or
// comma-separated, e.g. a mounted Kubernetes Secret) that is re-read when it
// changes, so keys rotate without a restart: add the new key, move clients,
// remove the old one. Keys are compared in constant time as SHA-256 digests
// and never logged. Failed authentications are limited per client IP, and
// a client over its budget is refused before its key is looked at.
package adminkey

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"

	"github.com/lookalike-dev/lookalike/shared/apierror"
)

// MinKeyLen is the shortest key accepted without a warning.
const MinKeyLen = 16

// CodeTooManyFailures is the code of a 429 for a client that sent too many
// wrong keys.
const CodeTooManyFailures = "too_many_auth_failures"

// Defaults of the failed-authentication limit.
const (
	DefaultFailuresPerMinute = 10
	DefaultFailureBurst      = 10
)

// Config says where the keys are and how many failures a client may make.
type Config struct {
	// Keys is a comma-separated list of keys (several allow rotation).
	Keys string
	// File, when set, holds more keys; it is re-read when its size or
	// modification time changes.
	File string
	// FailuresPerMinute is the sustained rate of failed authentications
	// allowed per client IP and FailureBurst how many may come at once
	// (0: the defaults; FailuresPerMinute < 0: no limit).
	FailuresPerMinute float64
	FailureBurst      int
}

// Keys is the set of valid admin keys.
type Keys struct {
	env  [][32]byte
	file string
	log  *slog.Logger
	// recheck is how often the file's stat is looked at.
	recheck time.Duration
	now     func() time.Time
	fails   *failures

	mu        sync.Mutex
	fileKeys  [][32]byte
	fileStamp string
	checked   time.Time
}

// New loads the keys of cfg. It fails when the key file cannot be read.
func New(cfg Config, log *slog.Logger) (*Keys, error) {
	k := &Keys{file: cfg.File, log: log, recheck: 2 * time.Second, now: time.Now}
	k.env = k.parse(cfg.Keys, "setting")
	if cfg.File != "" {
		if err := k.reload(true); err != nil {
			return nil, err
		}
	}
	if cfg.FailuresPerMinute >= 0 {
		per, burst := cfg.FailuresPerMinute, cfg.FailureBurst
		if per == 0 {
			per = DefaultFailuresPerMinute
		}
		if burst <= 0 {
			burst = DefaultFailureBurst
		}
		k.fails = newFailures(rate.Limit(per/60), burst)
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

// Bearer returns the token of an "Authorization: Bearer <token>" header
// (the scheme in any case).
func Bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const p = "bearer "
	if len(h) < len(p) || !strings.EqualFold(h[:len(p)], p) {
		return "", false
	}
	t := strings.TrimSpace(h[len(p):])
	return t, t != ""
}

// Check authenticates c's request: nil for a valid key; 429
// too_many_auth_failures when its client IP (c.RealIP, so the server's IP
// extractor decides what a client is) is over its failure budget, whatever
// key it sends; else 401 unauthorized for a missing or wrong key, a wrong
// key counting as a failure.
func (k *Keys) Check(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	ip := c.RealIP()
	if wait, over := k.fails.over(ip, k.now()); over {
		return apierror.New(http.StatusTooManyRequests, CodeTooManyFailures,
			"too many failed admin authentications from this client; retry later").WithRetryAfter(wait)
	}
	tok, ok := Bearer(c.Request())
	if !ok {
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="lookalike-admin"`)
		return apierror.New(http.StatusUnauthorized, apierror.CodeUnauthorized, "admin endpoints need an Authorization: Bearer <key> header")
	}
	if !k.Valid(tok) {
		k.fails.add(ip, k.now())
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="lookalike-admin", error="invalid_token"`)
		return apierror.New(http.StatusUnauthorized, apierror.CodeUnauthorized, "the admin key is not valid")
	}
	return nil
}

// Middleware refuses requests that Check refuses.
func (k *Keys) Middleware() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if err := k.Check(c); err != nil {
				return err
			}
			return next(c)
		}
	}
}

// maxClients bounds the clients tracked; past it, new clients share one
// budget until idle ones are swept.
const maxClients = 100_000

// failures is a token bucket of failed authentications per client. A
// bucket back to full is the same as no bucket, so sweeps drop those.
type failures struct {
	per   rate.Limit
	burst int

	mu      sync.Mutex
	clients map[string]*rate.Limiter
	swept   time.Time
}

func newFailures(per rate.Limit, burst int) *failures {
	return &failures{per: per, burst: burst, clients: map[string]*rate.Limiter{}}
}

// clientKey groups an IPv6 address by its /64, which one host usually holds whole.
func clientKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	if a = a.Unmap(); a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

func (f *failures) limiter(ip string, now time.Time, create bool) *rate.Limiter {
	key := clientKey(ip)
	if now.Sub(f.swept) > time.Minute {
		f.swept = now
		for k, l := range f.clients {
			if l.TokensAt(now) >= float64(f.burst) {
				delete(f.clients, k)
			}
		}
	}
	l := f.clients[key]
	if l == nil && len(f.clients) >= maxClients {
		key = "overflow"
		l = f.clients[key]
	}
	if l == nil && create {
		l = rate.NewLimiter(f.per, f.burst)
		f.clients[key] = l
	}
	return l
}

// over reports whether ip has no failure left, and when to retry (seconds).
func (f *failures) over(ip string, now time.Time) (int, bool) {
	if f == nil {
		return 0, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.limiter(ip, now, false)
	if l == nil {
		return 0, false
	}
	t := l.TokensAt(now)
	if t >= 1 {
		return 0, false
	}
	wait := 1
	if f.per > 0 {
		wait = max(1, int(math.Ceil((1-t)/float64(f.per))))
	}
	return wait, true
}

func (f *failures) add(ip string, now time.Time) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.limiter(ip, now, true).AllowN(now, 1)
}
