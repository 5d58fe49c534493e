package stack

import (
	"os"
	"testing"
	"time"
)

func TestProcessCPUTimeGrowsWithWork(t *testing.T) {
	// sample reads this process's CPU time both ways: /proc and getrusage.
	sample := func() (fromProc, fromRusage time.Duration) {
		var err error
		if fromProc, err = ProcessCPUTime(os.Getpid()); err != nil {
			t.Fatal(err)
		}
		if fromRusage, err = SelfCPUTime(); err != nil {
			t.Fatal(err)
		}
		return fromProc, fromRusage
	}
	before, selfBefore := sample()
	// Burn about 150 ms of CPU.
	x := 0
	for end := time.Now().Add(150 * time.Millisecond); time.Now().Before(end); {
		for i := range 10000 {
			x += i
		}
	}
	_ = x
	after, selfAfter := sample()
	if d := after - before; d < 50*time.Millisecond {
		t.Fatalf("/proc CPU time grew %v over 150 ms of busy work", d)
	}
	if d := selfAfter - selfBefore; d < 50*time.Millisecond {
		t.Fatalf("getrusage CPU time grew %v over 150 ms of busy work", d)
	}
	if _, err := ProcessCPUTime(1 << 30); err == nil {
		t.Fatal("no error for a process that does not exist")
	}
}
