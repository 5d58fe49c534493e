//go:build !cgo

package ortsession

import (
	"errors"
	"testing"
)

func TestNoCgoStubRefuses(t *testing.T) {
	if _, err := NewRuntime("/any/libonnxruntime.so"); !errors.Is(err, ErrNoCgo) {
		t.Errorf("NewRuntime without cgo: %v, want ErrNoCgo", err)
	}
}
