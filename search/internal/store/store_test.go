package store

import (
	"context"
	"errors"
	"testing"
)

func TestSplitCollection(t *testing.T) {
	tests := []struct {
		in             string
		catalog, model string
		ok             bool
	}{
		{"products__mobilenetv2-int8-v1", "products", "mobilenetv2-int8-v1", true},
		{"products", "", "", false},
		{"Products__m", "", "", false},
		{"p__", "", "", false},
		{"p__m__x", "", "", false},
	}
	for _, tc := range tests {
		c, m, ok := SplitCollection(tc.in)
		if c != tc.catalog || m != tc.model || ok != tc.ok {
			t.Fatalf("%q: %q %q %v", tc.in, c, m, ok)
		}
	}
}

func TestErrorKinds(t *testing.T) {
	tests := []struct {
		err  error
		kind Kind
		is   error
	}{
		{NotFound("x"), KindNotFound, ErrNotFound},
		{Conflict("x"), KindConflict, ErrConflict},
		{Invalid("x"), KindInvalid, ErrInvalid},
		{Unavailable(errors.New("down"), "x"), KindUnavailable, ErrUnavailable},
	}
	for _, tc := range tests {
		wrapped := errors.Join(errors.New("context"), tc.err)
		if KindOf(wrapped) != tc.kind || !errors.Is(wrapped, tc.is) {
			t.Fatalf("%v: kind %d", tc.err, KindOf(wrapped))
		}
	}
	if KindOf(errors.New("plain")) != 0 {
		t.Fatal("plain errors have no kind")
	}
}

func TestLazyIsUnavailableUntilSet(t *testing.T) {
	l := NewLazy("test")
	ctx := context.Background()
	calls := []struct {
		name string
		do   func() error
	}{
		{"ping", func() error { return l.Ping(ctx) }},
		{"search", func() error { _, err := l.Search(ctx, "c", Query{}); return err }},
		{"upsert", func() error { return l.Upsert(ctx, "c", nil) }},
		{"alias", func() error { _, err := l.Alias(ctx, "a"); return err }},
	}
	for _, c := range calls {
		if KindOf(c.do()) != KindUnavailable {
			t.Fatalf("%s before Set: want unavailable", c.name)
		}
	}
	if l.Close() != nil || l.Opened() {
		t.Fatal("closing an unset Lazy is a no-op")
	}
}
