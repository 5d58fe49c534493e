//go:build !cgo

package ortsession

import "time"

// Runtime is unavailable without cgo.
type Runtime struct{}

// NewRuntime returns ErrNoCgo.
func NewRuntime(string) (*Runtime, error) { return nil, ErrNoCgo }

// Version is empty without cgo.
func (r *Runtime) Version() string { return "" }

// Close does nothing.
func (r *Runtime) Close() error { return nil }

// Session is unavailable without cgo.
type Session struct{}

// NewSession returns ErrNoCgo.
func (r *Runtime) NewSession([]byte, SessionOptions) (*Session, error) { return nil, ErrNoCgo }

// Provider is empty without cgo.
func (s *Session) Provider() string { return "" }

// ItemBytes is 0 without cgo.
func (s *Session) ItemBytes() int { return 0 }

// Run returns ErrNoCgo.
func (s *Session) Run([]byte, int) ([]float32, int, error) { return nil, 0, ErrNoCgo }

// Close does nothing.
func (s *Session) Close() error { return nil }

// BareThroughput returns ErrNoCgo.
func (r *Runtime) BareThroughput([]byte, SessionOptions, []byte, int, int, time.Duration) (float64, string, error) {
	return 0, "", ErrNoCgo
}
