// Package sysmon names the Go runtime setting every Lookalike process runs
// with, and checks for it.
//
// The Go runtime's system monitor (sysmon, one thread per process) sleeps
// "deeply" while every P is idle, and the next goroutine to enter a system
// call or cgo call wakes it and resets its period to 20 us, from which it
// backs off only after 50 quiet cycles (runtime/proc.go, sysmon, Go 1.26). A
// service that waits on the network between short bursts of work goes idle
// and busy hundreds of times a second, so its sysmon wakes about a thousand
// times a second: under bench-e2e on two shared cores, 9,000-13,000 wakeups
// in 10 s and 3% of a core in each of the gateway, embed and search, a cost
// the single-process reference pays once (golang/go#18236 tracks sysmon's
// fixed tick).
//
// With any schedtrace period set, sysmon never enters deep sleep, so no
// system call wakes it: it backs off to its 10 ms period whenever it has
// nothing to retake. Setting is the longest period (2^31-1 ms, 24.8 days),
// so the scheduler trace itself is printed (one line on stderr) only when
// the host has been up longer than that, and then once per period. Measured
// with bench-e2e (same run, alternating): the gateway's sysmon wakeups fell
// from ~10,000 to ~1,500 in 10 s, and the CPU the services spend per query
// by ~2 ms (gateway ~1 ms, embed ~0.6 ms, search ~0.2 ms). The images set
// it (so the manifests' pods run with it; check-dockerfiles requires it), and
// so do make run, the e2e stack and the benchmarks.
//
// The other wake-up it does not cover: a cgo call that lasts long enough for
// sysmon to retake its P (ONNX Runtime's inferences in embed). preprocess's
// JPEG decodes avoid it by running on C threads of their own
// (preprocess/internal/turbojpeg).
// TestSettingQuietsSysmon checks the effect on the Go version in use, so an
// upgrade that changes sysmon fails it instead of silently losing it.
package sysmon

import (
	"strconv"
	"strings"
)

// Setting is the GODEBUG entry that keeps sysmon out of deep sleep.
const Setting = "schedtrace=2147483647"

// On reports whether a GODEBUG value keeps sysmon out of deep sleep: a
// schedtrace period above zero (the last entry wins, as in the runtime).
func On(godebug string) bool {
	on := false
	for _, kv := range strings.Split(godebug, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k != "schedtrace" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 32)
		on = err == nil && n > 0
	}
	return on
}

// With returns godebug with Setting added (an existing schedtrace entry is
// replaced), for starting a child process.
func With(godebug string) string {
	var keep []string
	for _, kv := range strings.Split(godebug, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" || strings.HasPrefix(kv, "schedtrace=") {
			continue
		}
		keep = append(keep, kv)
	}
	return strings.Join(append(keep, Setting), ",")
}
