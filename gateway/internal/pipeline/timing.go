package pipeline

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Timings records how long each hop of one request took, for the
// Server-Timing response header.
type Timings struct {
	mu      sync.Mutex
	entries []timing
}

type timing struct {
	name string
	dur  time.Duration
}

type timingsKey struct{}

// WithTimings returns a context that collects hop timings in t.
func WithTimings(ctx context.Context, t *Timings) context.Context {
	return context.WithValue(ctx, timingsKey{}, t)
}

// track records the time since start under name, when ctx collects timings.
func track(ctx context.Context, name string, start time.Time) {
	if t, ok := ctx.Value(timingsKey{}).(*Timings); ok {
		t.Add(name, time.Since(start))
	}
}

// Track is track for callers outside the package (the fetch hop).
func Track(ctx context.Context, name string, start time.Time) { track(ctx, name, start) }

// Add records one hop.
func (t *Timings) Add(name string, d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.entries = append(t.entries, timing{name, d})
}

// Header renders the Server-Timing value, e.g.
// "preprocess;dur=3.1, embed;dur=41.0, search;dur=1.2, total;dur=46.0".
func (t *Timings) Header(total time.Duration) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	parts := make([]string, 0, len(t.entries)+1)
	for _, e := range t.entries {
		parts = append(parts, fmt.Sprintf("%s;dur=%.1f", e.name, float64(e.dur.Microseconds())/1000))
	}
	parts = append(parts, fmt.Sprintf("total;dur=%.1f", float64(total.Microseconds())/1000))
	return strings.Join(parts, ", ")
}
