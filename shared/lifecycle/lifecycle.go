// Package lifecycle names the shutdown defaults every service shares, so
// the manifests' rules check pod grace periods against the services' own
// values. Standard library only, for the manifests module.
package lifecycle

import "time"

// A service goes NotReady on SIGTERM, waits DrainDelay so load balancers
// stop sending, then finishes in-flight work within ShutdownTimeout.
const (
	DrainDelay      = 5 * time.Second
	ShutdownTimeout = 20 * time.Second
)
