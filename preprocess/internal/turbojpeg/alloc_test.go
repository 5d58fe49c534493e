package turbojpeg

import (
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
)

// minorFaults is this process's count of page faults served without I/O
// (a fresh page zero-filled, for one).
func minorFaults(t *testing.T) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return ru.Minflt
}

// A 13 MP progressive photo decoded again and again (a catalog of camera
// photos) must reuse the allocator's memory, not fault in ~10,000 fresh
// pages of coefficient arrays every time.
func TestRepeatedProgressiveDecodeReusesMemory(t *testing.T) {
	if !Available() {
		t.Skip("libjpeg-turbo not linked in (CGO_ENABLED=0): nothing to tune")
	}
	dir := os.Getenv("LOOKALIKE_SHARED")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "..", "shared")
	}
	jpg, err := os.ReadFile(filepath.Join(dir, "catalog", "images", "lm-wall-033.jpg")) // 4224x3168, progressive
	if err != nil {
		t.Fatalf("shared data not found at %s (set LOOKALIKE_SHARED): %v", dir, err)
	}
	if err := KeepFreedMemory(256 << 20); err != nil {
		t.Fatal(err)
	}
	// One OS thread: glibc gives each thread an arena, warmed by its first
	// decode.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var dst []byte
	decode := func() {
		if dst, _, _, err = DecodeRGB(jpg, Factor{Num: 1, Denom: 8}, false, dst); err != nil {
			t.Fatal(err)
		}
	}
	decode() // warms the arena and dst
	before := minorFaults(t)
	const n = 3
	for range n {
		decode()
	}
	perDecode := (minorFaults(t) - before) / n
	// The coefficient arrays alone span 4224*3168*1.5*2 bytes = 9,800 pages.
	if perDecode > 1000 {
		t.Fatalf("%d page faults per decode of a 13 MP progressive JPEG: the allocator hands its memory back every time", perDecode)
	}
	t.Logf("%d page faults per decode", perDecode)
}
