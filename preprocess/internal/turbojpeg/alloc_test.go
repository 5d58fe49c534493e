package turbojpeg

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
)

// minorFaults is this process's count of page faults served without I/O
// (a fresh page zero-filled, for one). It may run on any goroutine.
func minorFaults(t *testing.T) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Errorf("getrusage: %v", err)
	}
	return ru.Minflt
}

// catalogJPEGs reads photos of the shared catalog (LOOKALIKE_SHARED, else
// the folder beside the project).
func catalogJPEGs(t *testing.T, names ...string) [][]byte {
	t.Helper()
	dir := os.Getenv("LOOKALIKE_SHARED")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "..", "shared")
	}
	out := make([][]byte, len(names))
	for i, name := range names {
		b, err := os.ReadFile(filepath.Join(dir, "catalog", "images", name))
		if err != nil {
			t.Fatalf("shared data not found at %s (set LOOKALIKE_SHARED): %v", dir, err)
		}
		out[i] = b
	}
	return out
}

// inOneArena reports whether this process runs with ArenaEnv, as the
// service does; if not, it runs the test again in a process that does
// (glibc reads it at start) and reports that run's outcome.
func inOneArena(t *testing.T) bool {
	t.Helper()
	if OneArena(os.Getenv) {
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), ArenaEnv)
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS")) {
		t.Fatalf("in a process with %s: %v\n%s", ArenaEnv, err, out)
	}
	t.Logf("in a process with %s:\n%s", ArenaEnv, out)
	return false
}

// A 13 MP progressive photo decoded again and again (a catalog of camera
// photos) must reuse the allocator's memory, not fault in ~10,000 fresh
// pages of coefficient arrays every time. Decodes run on the package's C
// threads, whichever is free; with one malloc arena (ArenaEnv, as the
// service runs) they share its kept memory.
func TestRepeatedProgressiveDecodeReusesMemory(t *testing.T) {
	if !Available() {
		t.Skip("libjpeg-turbo not linked in (CGO_ENABLED=0): nothing to tune")
	}
	if !inOneArena(t) {
		return
	}
	jpg := catalogJPEGs(t, "lm-wall-033.jpg")[0] // 4224x3168, progressive
	if err := KeepFreedMemory(256 << 20); err != nil {
		t.Fatal(err)
	}
	var dst []byte
	decode := func() {
		var err error
		if dst, _, _, err = DecodeRGB(context.Background(), jpg, Factor{Num: 1, Denom: 8}, false, dst); err != nil {
			t.Fatal(err)
		}
	}
	// The first decodes fault the memory in (the first ~13,000 pages, one
	// of the next two ~6,500 more, on any number of decoding threads); the
	// rest reuse it.
	decode()
	decode()
	decode()
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

// A mix of large progressive photos decoded in turn on a thread started
// after the tuning, as a server's are, in a process started with ArenaEnv
// as the service's is. With glibc's default of an arena per thread, that
// arena's heaps (64 MB each) are unmapped whenever one empties, and every
// round faults ~20,000 pages (80 MB) in afresh.
func TestProgressiveMixReusesMemory(t *testing.T) {
	if !Available() {
		t.Skip("libjpeg-turbo not linked in (CGO_ENABLED=0): nothing to tune")
	}
	if !inOneArena(t) {
		return
	}
	jpgs := catalogJPEGs(t, "lm-wall-044.jpg", "lm-wall-033.jpg", "lm-wall-045.jpg", "lm-wall-032.jpg", "lm-wall-043.jpg")
	// glibc binds a thread to an arena at its first malloc or free, for
	// good: threads the allocator met before it was tuned keep theirs. A
	// server decodes on threads started under load, after the tuning.
	older := map[int]bool{}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range tasks {
		tid, _ := strconv.Atoi(e.Name())
		older[tid] = true
	}
	if err := KeepFreedMemory(256 << 20); err != nil {
		t.Fatal(err)
	}
	const rounds = 4
	faults := make(chan [rounds]int64, 1)
	errs := make(chan error, 1)
	var decodeOnNewThread func(tries int)
	decodeOnNewThread = func(tries int) {
		runtime.LockOSThread() // a thread of its own; kept locked, it ends with this goroutine
		if older[syscall.Gettid()] {
			if tries == 0 {
				errs <- fmt.Errorf("no thread started after the allocator was tuned")
				return
			}
			go decodeOnNewThread(tries - 1) // and this thread ends: the runtime starts another
			return
		}
		var f [rounds]int64
		var dst []byte
		for r := range rounds {
			before := minorFaults(t)
			for _, jpg := range jpgs {
				var err error
				if dst, _, _, err = DecodeRGB(context.Background(), jpg, Factor{Num: 1, Denom: 8}, false, dst); err != nil {
					errs <- err
					return
				}
			}
			f[r] = minorFaults(t) - before
		}
		faults <- f
	}
	go decodeOnNewThread(50)
	var f [rounds]int64
	select {
	case err := <-errs:
		t.Fatal(err)
	case f = <-faults:
	}
	// The first round faults the memory in (and the output buffer grows);
	// later ones reuse it. The coefficient arrays of the mix span ~45,000 pages.
	for r := 1; r < rounds; r++ {
		if per := f[r] / int64(len(jpgs)); per > 500 {
			t.Fatalf("round %d: %d page faults per decode (rounds: %v): freed decoder memory went back to the kernel", r, per, f)
		}
	}
	t.Logf("page faults per round of %d decodes: %v", len(jpgs), f)
}
