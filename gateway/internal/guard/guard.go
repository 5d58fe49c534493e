// Package guard protects the gateway from more work than it can do: a
// concurrency limit that sheds load with 429 + Retry-After instead of
// queueing without bound, and per-client rate limiting (echo's rate limiter
// middleware over golang.org/x/time/rate) keyed by admin key digest or
// client IP.
package guard

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"golang.org/x/time/rate"

	"github.com/lookalike-dev/lookalike/shared/adminkey"
	"github.com/lookalike-dev/lookalike/shared/apierror"
)

// Concurrency admits at most a fixed number of requests at once. A request
// that finds no slot waits up to QueueWait, then is shed.
type Concurrency struct {
	slots     chan struct{}
	queueWait time.Duration
}

// NewConcurrency allows limit requests in flight (limit < 1 means 1).
func NewConcurrency(limit int, queueWait time.Duration) *Concurrency {
	return &Concurrency{slots: make(chan struct{}, max(limit, 1)), queueWait: queueWait}
}

// InFlight is the number of requests holding a slot.
func (l *Concurrency) InFlight() int { return len(l.slots) }

func overloaded() *apierror.Error {
	return apierror.New(http.StatusTooManyRequests, apierror.CodeOverloaded,
		"the gateway is at its concurrency limit; retry shortly").WithRetryAfter(1)
}

// Middleware sheds requests over the limit with 429 overloaded.
func (l *Concurrency) Middleware() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			select {
			case l.slots <- struct{}{}:
			default:
				if l.queueWait <= 0 {
					return overloaded()
				}
				t := time.NewTimer(l.queueWait)
				select {
				case l.slots <- struct{}{}:
					t.Stop()
				case <-t.C:
					return overloaded()
				case <-c.Request().Context().Done():
					t.Stop()
					return overloaded()
				}
			}
			defer func() { <-l.slots }()
			return next(c)
		}
	}
}

// RateConfig sets per-client limits.
type RateConfig struct {
	// PerSecond is the sustained rate and Burst the bucket size per client.
	PerSecond float64
	Burst     int
	// ByKey counts requests that carry a bearer key against the key (put the
	// limiter after authentication so only valid keys get their own bucket);
	// otherwise every request counts against its client IP.
	ByKey bool
}

// ClientIP returns how a request's client IP is found. With no trusted
// proxies it is the connection's peer and X-Forwarded-For is ignored.
// Otherwise, when the peer is in one of the trusted ranges (CIDRs or
// single IPs), X-Forwarded-For is read from the right, skipping trusted
// hops, and the first address not in them is the client; a header from
// any other peer is ignored. Loopback, link-local and private addresses
// are trusted only when listed.
func ClientIP(trustedProxies []string) (echo.IPExtractor, error) {
	if len(trustedProxies) == 0 {
		return echo.ExtractIPDirect(), nil
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, s := range trustedProxies {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("trusted proxy %q is neither a CIDR range nor an IP address", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		p = p.Masked()
		opts = append(opts, echo.TrustIPRange(&net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}))
	}
	return echo.ExtractIPFromXFFHeader(opts...), nil
}

// ClientID names the client a request counts against: with byKey, a digest
// of its bearer key when it sends one (never the key itself); else its IP
// as the server's IP extractor finds it (c.RealIP).
func ClientID(c echo.Context, byKey bool) string {
	if tok, ok := adminkey.Bearer(c.Request()); ok && byKey {
		d := sha256.Sum256([]byte(tok))
		return "key:" + hex.EncodeToString(d[:8])
	}
	return "ip:" + c.RealIP()
}

// RateLimit returns the per-client rate limiting middleware; a PerSecond of
// 0 or less turns it off.
func RateLimit(cfg RateConfig) echo.MiddlewareFunc {
	if cfg.PerSecond <= 0 {
		return func(next echo.HandlerFunc) echo.HandlerFunc { return next }
	}
	store := middleware.NewRateLimiterMemoryStoreWithConfig(middleware.RateLimiterMemoryStoreConfig{
		Rate: rate.Limit(cfg.PerSecond), Burst: max(cfg.Burst, 1), ExpiresIn: 3 * time.Minute,
	})
	return middleware.RateLimiterWithConfig(middleware.RateLimiterConfig{
		Store: store,
		IdentifierExtractor: func(c echo.Context) (string, error) {
			return ClientID(c, cfg.ByKey), nil
		},
		DenyHandler: func(c echo.Context, _ string, _ error) error {
			return apierror.New(http.StatusTooManyRequests, apierror.CodeRateLimited,
				"too many requests from this client").WithRetryAfter(1)
		},
		ErrorHandler: func(c echo.Context, err error) error {
			return apierror.Wrap(err, http.StatusForbidden, apierror.CodeForbidden, "client could not be identified")
		},
	})
}
