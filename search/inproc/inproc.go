// Package inproc exposes the search stage (the searchv1 service over the
// embedded store) as a library, for in-process use by the end-to-end
// benchmark's no-HTTP reference pipeline. Services never import it: they
// call the search service through its contract.
package inproc

import (
	"fmt"

	"github.com/lookalike-dev/lookalike/search/internal/embedded"
	"github.com/lookalike-dev/lookalike/search/internal/service"
)

// Index is the searchv1 service over an embedded store in dir, with the
// service defaults. Its methods take and return searchv1 types.
type Index struct {
	*service.Service
	st *embedded.Store
}

// Open opens (or creates) the embedded store under dir.
func Open(dir string) (*Index, error) {
	st, err := embedded.Open(embedded.Options{Dir: dir})
	if err != nil {
		return nil, fmt.Errorf("opening embedded store: %w", err)
	}
	return &Index{Service: service.New(st), st: st}, nil
}

// Close flushes and closes the store.
func (i *Index) Close() error { return i.st.Close() }
