package store

import (
	"context"
	"sync/atomic"
)

// Lazy is a Store that is opened in the background (the embedded store
// recovers its snapshot and log; a large one takes a while), so the server
// can serve /healthz meanwhile. Until Set, every call is KindUnavailable,
// which the API answers with 503.
type Lazy struct {
	backend string
	st      atomic.Pointer[Store]
}

// NewLazy makes an empty Lazy for the named backend.
func NewLazy(backend string) *Lazy { return &Lazy{backend: backend} }

// Set installs the opened store.
func (l *Lazy) Set(s Store) { l.st.Store(&s) }

// Opened reports whether Set was called.
func (l *Lazy) Opened() bool { return l.st.Load() != nil }

func (l *Lazy) get() (Store, error) {
	p := l.st.Load()
	if p == nil {
		return nil, Unavailable(nil, "%s store is still opening", l.backend)
	}
	return *p, nil
}

var _ Store = (*Lazy)(nil)

// Backend names the backend.
func (l *Lazy) Backend() string { return l.backend }

// Ping fails until the store is set.
func (l *Lazy) Ping(ctx context.Context) error {
	s, err := l.get()
	if err != nil {
		return err
	}
	return s.Ping(ctx)
}

// CreateCollection delegates.
func (l *Lazy) CreateCollection(ctx context.Context, catalog, model string, dim int) (Collection, error) {
	s, err := l.get()
	if err != nil {
		return Collection{}, err
	}
	return s.CreateCollection(ctx, catalog, model, dim)
}

// DropCollection delegates.
func (l *Lazy) DropCollection(ctx context.Context, name string) error {
	s, err := l.get()
	if err != nil {
		return err
	}
	return s.DropCollection(ctx, name)
}

// Collection delegates.
func (l *Lazy) Collection(ctx context.Context, name string) (Collection, error) {
	s, err := l.get()
	if err != nil {
		return Collection{}, err
	}
	return s.Collection(ctx, name)
}

// Collections delegates.
func (l *Lazy) Collections(ctx context.Context) ([]Collection, error) {
	s, err := l.get()
	if err != nil {
		return nil, err
	}
	return s.Collections(ctx)
}

// Upsert delegates.
func (l *Lazy) Upsert(ctx context.Context, collection string, points []Point) error {
	s, err := l.get()
	if err != nil {
		return err
	}
	return s.Upsert(ctx, collection, points)
}

// Get delegates.
func (l *Lazy) Get(ctx context.Context, collection, sku string) (Point, error) {
	s, err := l.get()
	if err != nil {
		return Point{}, err
	}
	return s.Get(ctx, collection, sku)
}

// Delete delegates.
func (l *Lazy) Delete(ctx context.Context, collection, sku string) error {
	s, err := l.get()
	if err != nil {
		return err
	}
	return s.Delete(ctx, collection, sku)
}

// Count delegates.
func (l *Lazy) Count(ctx context.Context, collection string) (int64, error) {
	s, err := l.get()
	if err != nil {
		return 0, err
	}
	return s.Count(ctx, collection)
}

// Search delegates.
func (l *Lazy) Search(ctx context.Context, collection string, q Query) ([]Hit, error) {
	s, err := l.get()
	if err != nil {
		return nil, err
	}
	return s.Search(ctx, collection, q)
}

// Recommend delegates.
func (l *Lazy) Recommend(ctx context.Context, collection, sku string, q Query) ([]Hit, error) {
	s, err := l.get()
	if err != nil {
		return nil, err
	}
	return s.Recommend(ctx, collection, sku, q)
}

// Alias delegates.
func (l *Lazy) Alias(ctx context.Context, alias string) (string, error) {
	s, err := l.get()
	if err != nil {
		return "", err
	}
	return s.Alias(ctx, alias)
}

// Aliases delegates.
func (l *Lazy) Aliases(ctx context.Context) (map[string]string, error) {
	s, err := l.get()
	if err != nil {
		return nil, err
	}
	return s.Aliases(ctx)
}

// SwitchAlias delegates.
func (l *Lazy) SwitchAlias(ctx context.Context, alias, collection string) error {
	s, err := l.get()
	if err != nil {
		return err
	}
	return s.SwitchAlias(ctx, alias, collection)
}

// DeleteAlias delegates.
func (l *Lazy) DeleteAlias(ctx context.Context, alias string) error {
	s, err := l.get()
	if err != nil {
		return err
	}
	return s.DeleteAlias(ctx, alias)
}

// Close closes the store if it was set.
func (l *Lazy) Close() error {
	s, err := l.get()
	if err != nil {
		return nil
	}
	return s.Close()
}
