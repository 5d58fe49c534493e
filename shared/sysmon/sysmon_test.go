package sysmon

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestOn(t *testing.T) {
	for _, tc := range []struct {
		godebug string
		want    bool
	}{
		{"", false},
		{Setting, true},
		{"madvdontneed=1," + Setting, true},
		{"schedtrace=0", false},
		{"schedtrace=1000", true},
		{Setting + ",schedtrace=0", false},
		{"schedtrace=x", false},
		{"schedtrace=99999999999", false}, // over int32: the runtime ignores it
		{"gctrace=1", false},
	} {
		if got := On(tc.godebug); got != tc.want {
			t.Errorf("On(%q) = %v, want %v", tc.godebug, got, tc.want)
		}
	}
}

func TestWith(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", Setting},
		{"gctrace=1", "gctrace=1," + Setting},
		{"schedtrace=1000,gctrace=1", "gctrace=1," + Setting},
		{" gctrace=1 , ", "gctrace=1," + Setting},
	} {
		got := With(tc.in)
		if got != tc.want {
			t.Errorf("With(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if !On(got) {
			t.Errorf("On(With(%q)) = false", tc.in)
		}
	}
}

// childEnv marks the test binary re-run as the HTTP server under test.
const childEnv = "SYSMON_TEST_SERVER"

// TestSettingQuietsSysmon runs a small HTTP server (GOMAXPROCS=1, as the
// gateway and search run) in a child process, with and without Setting, and
// serves it the same sequence of requests with short idle gaps: the pattern
// of a service waiting on the network. Without the setting every request
// wakes the child's sysmon out of deep sleep into its 20 us period; with it,
// sysmon stays at its backed-off period. The child's voluntary context
// switches (all threads, /proc) must at least halve; measured here ~920 ->
// ~350 for 300 requests.
func TestSettingQuietsSysmon(t *testing.T) {
	if os.Getenv(childEnv) == "1" {
		serveForever()
		return
	}
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	var without, with int
	for range 2 { // the best of two, each way: a busy machine adds switches, never removes them
		a := childSwitches(t, "")
		b := childSwitches(t, Setting)
		if without == 0 || a < without {
			without = a
		}
		if with == 0 || b < with {
			with = b
		}
	}
	t.Logf("voluntary context switches over 300 requests: %d without GODEBUG=%s, %d with", without, Setting, with)
	if with*2 > without {
		t.Errorf("GODEBUG=%s no longer quiets sysmon on %s: %d voluntary switches with it, %d without (want at most half); the runtime's sysmon changed, so revisit package sysmon", Setting, runtime.Version(), with, without)
	}
}

func serveForever() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().String())
	answer := make([]byte, 64<<10)
	_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write(answer)
	}))
}

// childSwitches starts the server child with godebug and returns the
// voluntary context switches of all its threads while it answers 300
// requests, one at a time, 1 ms apart.
func childSwitches(t *testing.T, godebug string) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSettingQuietsSysmon$")
	cmd.Env = append(os.Environ(), childEnv+"=1", "GOMAXPROCS=1", "GODEBUG="+godebug)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the child's address: %v", err)
	}
	addr = strings.TrimSpace(addr)
	c := &http.Client{Timeout: 10 * time.Second}
	get := func() {
		resp, err := c.Get("http://" + addr + "/")
		if err != nil {
			t.Fatalf("request to the child: %v", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	get() // connected and warm
	time.Sleep(50 * time.Millisecond)
	before := voluntarySwitches(t, cmd.Process.Pid)
	for range 300 {
		get()
		time.Sleep(time.Millisecond)
	}
	return voluntarySwitches(t, cmd.Process.Pid) - before
}

// voluntarySwitches sums voluntary_ctxt_switches over a process's threads.
func voluntarySwitches(t *testing.T, pid int) int {
	t.Helper()
	paths, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(paths) == 0 {
		t.Fatalf("listing the threads of process %d: %v", pid, err)
	}
	total := 0
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // a thread that just ended
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				n, err := strconv.Atoi(strings.TrimSpace(v))
				if err != nil {
					t.Fatalf("parsing %s: %v", p, err)
				}
				total += n
			}
		}
	}
	return total
}
