// Package canary rolls a new embedding model out behind the gateway. A
// model is a vector space, so a canary is not "some pods of the new
// version": it is a second space (catalog collection) filled by a backfill
// and kept current by dual writes, a sticky share of queries answered
// entirely by the new model's embedder AND space, a shadow comparison of
// the two spaces on real traffic, and an atomic alias switch to promote or
// roll back.
//
// Which space is stable and which is the canary is read from search's
// aliases (shared by every gateway replica, cached briefly):
//
//	products                  -> products__<A>   stable
//	products-canary-backfill  -> products__<B>   canary being backfilled: dual writes, no traffic
//	products-canary           -> products__<B>   canary live: dual writes, CANARY_SHARE of traffic
//
// The traffic share comes from configuration (CANARY_SHARE, one ConfigMap
// for all replicas), so every replica splits the same clients the same way.
package canary

import (
	"encoding/binary"
	"hash/fnv"
	"net/http"
	"strings"
	"unicode"

	"github.com/labstack/echo/v4"
)

// Headers of the split.
const (
	// HeaderClientID names the client (or session) a query belongs to; the
	// split is sticky per value. Without it the client IP is used.
	HeaderClientID = "Lookalike-Client-Id"
	// HeaderOverride forces an arm: "stable" or "canary" (or the model id
	// of either), for testing and for comparing answers by hand.
	HeaderOverride = "Lookalike-Model"
	// HeaderArm on a search response says which arm answered.
	HeaderArm = "Lookalike-Arm"
	// HeaderModel on a search response names the model (vector space) that answered.
	HeaderModel = "Lookalike-Model-Id"
	// MaxClientID bounds a client id; longer values fall back to the IP.
	MaxClientID = 256
)

// Arm is one side of the split.
type Arm int

// Arms.
const (
	Stable Arm = iota
	Canary
)

func (a Arm) String() string {
	if a == Canary {
		return "canary"
	}
	return "stable"
}

// ClientKey names the client a request belongs to: its Lookalike-Client-Id
// when it sends a usable one, otherwise its IP as clientIP finds it (nil:
// the connection's peer; the gateway trusts X-Forwarded-For only from its
// configured proxies).
func ClientKey(r *http.Request, clientIP echo.IPExtractor) string {
	if id := strings.TrimSpace(r.Header.Get(HeaderClientID)); id != "" && len(id) <= MaxClientID && printable(id) {
		return "id:" + id
	}
	if clientIP == nil {
		clientIP = echo.ExtractIPDirect()
	}
	return "ip:" + clientIP(r)
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// Bucket maps a client key to a point in [0, 1), uniformly and stably. The
// salt (the canary's model id) reshuffles clients between rollouts, so the
// same few clients are not the guinea pigs of every canary.
func Bucket(salt, key string) float64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(salt))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(key))
	x := mix64(binary.BigEndian.Uint64(h.Sum(nil)))
	return float64(x>>11) / (1 << 53)
}

// mix64 is the SplitMix64 finaliser: FNV-1a alone spreads short, similar
// keys ("client-1", "client-2") poorly in its high bits.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// InCanary reports whether a client key falls in the canary share. Raising
// the share only adds clients: one in the canary at 5% is still in at 10%.
func InCanary(salt, key string, share float64) bool {
	return share > 0 && Bucket(salt, key) < share
}
