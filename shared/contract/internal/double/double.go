// Package double is what the contracts' test doubles share: a loopback
// server and a switchable /readyz.
package double

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"

	"github.com/lookalike-dev/lookalike/shared/apierror"
)

// Base is embedded in each double.
type Base struct {
	srv      *httptest.Server
	notReady atomic.Bool
}

// Start serves h on a loopback httptest server.
func (b *Base) Start(h http.Handler) { b.srv = httptest.NewServer(h) }

// URL is the base URL of the server Start started.
func (b *Base) URL() string { return b.srv.URL }

// Close stops the server Start started.
func (b *Base) Close() { b.srv.Close() }

// SetReady makes /readyz answer 200 (true) or 503 not_ready (false).
func (b *Base) SetReady(ok bool) { b.notReady.Store(!ok) }

// Readyz serves GET /readyz.
func (b *Base) Readyz(w http.ResponseWriter, _ *http.Request) {
	if b.notReady.Load() {
		apierror.Write(w, apierror.New(http.StatusServiceUnavailable, apierror.CodeNotReady, "not ready"))
		return
	}
	w.WriteHeader(http.StatusOK)
}
