package embedded

import (
	"github.com/lookalike-dev/lookalike/search/internal/hnsw"
	"testing"

	"github.com/lookalike-dev/lookalike/search/internal/store"
	"github.com/lookalike-dev/lookalike/search/internal/store/storetest"
)

func openTemp(t *testing.T, opts Options) *Store {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformanceExactScan(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t, Options{}) })
}

// Threshold 1 sends every query through the HNSW graph (when compiled in).
func TestConformanceGraph(t *testing.T) {
	if !hnsw.Available {
		t.Log("hnswlib not compiled in (CGO_ENABLED=0): this run checks the exact scan again")
	}
	storetest.Run(t, func(t *testing.T) store.Store {
		return openTemp(t, Options{ExactThreshold: 1, HNSW: graphParams})
	})
}

// A tiny snapshot threshold snapshots on nearly every write, and every
// store is closed and reopened, so recovery runs under the whole suite.
func TestConformanceSnapshotEveryWrite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openTemp(t, Options{SnapshotBytes: 1, ExactThreshold: 1})
	})
}
