package server

import (
	"sync"
)

// Prober is the explicit health state of a service (after Thanos' prober):
// Healthy once serving; Ready only after warm-up; NotReady first on shutdown.
type Prober struct {
	mu       sync.RWMutex
	healthy  bool
	ready    bool
	notReady string
}

// NewProber starts neither healthy nor ready.
func NewProber() *Prober { return &Prober{notReady: "starting"} }

// Healthy marks the process alive and serving.
func (p *Prober) Healthy() {
	p.mu.Lock()
	p.healthy = true
	p.mu.Unlock()
}

// NotHealthy marks the process broken (liveness fails).
func (p *Prober) NotHealthy() {
	p.mu.Lock()
	p.healthy = false
	p.mu.Unlock()
}

// Ready marks the service able to serve.
func (p *Prober) Ready() {
	p.mu.Lock()
	p.ready, p.notReady = true, ""
	p.mu.Unlock()
}

// NotReady takes the service out of rotation, with a reason for /readyz.
func (p *Prober) NotReady(reason string) {
	p.mu.Lock()
	p.ready, p.notReady = false, reason
	p.mu.Unlock()
}

// IsHealthy reports liveness.
func (p *Prober) IsHealthy() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.healthy
}

// IsReady reports readiness and, when not ready, why.
func (p *Prober) IsReady() (bool, string) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.ready, p.notReady
}
