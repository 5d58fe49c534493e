// Package testenv finds the data the embed tests need: the repository root,
// the read-only shared folder (LOOKALIKE_SHARED, default <repo>/../shared),
// the model folder (MODEL_DIR, default <shared>/models) and the ONNX Runtime
// library (ONNXRUNTIME_LIB, default <repo>/.cache/onnxruntime/libonnxruntime.so.1).
// Missing data fails the test with a message that says how to get it; nothing
// is skipped.
package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// DefaultModelID is the model id of the committed default spec.
const DefaultModelID = "mobilenetv2-int8-v1"

// RepoRoot walks up from the working directory to the folder holding embed/go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("getting the working directory: %v", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "embed", "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatalf("no folder above %s holds embed/go.mod", dir)
		}
	}
}

// SharedDir is LOOKALIKE_SHARED or <repo>/../shared.
func SharedDir(t testing.TB) string {
	t.Helper()
	if v := os.Getenv("LOOKALIKE_SHARED"); v != "" {
		return v
	}
	return filepath.Join(RepoRoot(t), "..", "shared")
}

// ModelDir is MODEL_DIR or <shared>/models, and must exist.
func ModelDir(t testing.TB) string {
	t.Helper()
	d := os.Getenv("MODEL_DIR")
	if d == "" {
		d = filepath.Join(SharedDir(t), "models")
	}
	if _, err := os.Stat(filepath.Join(d, "mobilenetv2-12-int8.onnx")); err != nil {
		t.Fatalf("model folder %s lacks mobilenetv2-12-int8.onnx (set MODEL_DIR or LOOKALIKE_SHARED; see shared/models/README.md): %v", d, err)
	}
	return d
}

// ModelPath is the default ONNX model file.
func ModelPath(t testing.TB) string {
	t.Helper()
	return filepath.Join(ModelDir(t), "mobilenetv2-12-int8.onnx")
}

// SpecDir is the committed model spec folder, embed/models.
func SpecDir(t testing.TB) string {
	t.Helper()
	return filepath.Join(RepoRoot(t), "embed", "models")
}

// ORTLib is ONNXRUNTIME_LIB or the library make setup fetches; it must exist.
func ORTLib(t testing.TB) string {
	t.Helper()
	p := os.Getenv("ONNXRUNTIME_LIB")
	if p == "" {
		p = filepath.Join(RepoRoot(t), ".cache", "onnxruntime", "libonnxruntime.so.1")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("ONNX Runtime library %s is missing: run `make setup` or set ONNXRUNTIME_LIB: %v", p, err)
	}
	return p
}
