// Package sysmon names the Go runtime setting every Lookalike process runs
// with, and checks for it.
//
// Surprise: a service that waits on the network between short bursts of work
// wakes the runtime's system monitor out of deep sleep on every system call
// after an idle spell, which resets its period to 20 us (runtime/proc.go,
// golang/go#18236). With any schedtrace period set, sysmon never deep-sleeps,
// so it backs off to 10 ms instead; Setting is the longest period, so the
// trace line itself is never printed in practice. What it saves is measured
// in docs/performance.md. TestSettingQuietsSysmon checks the effect on the Go
// version in use, so an upgrade that changes sysmon fails it.
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
