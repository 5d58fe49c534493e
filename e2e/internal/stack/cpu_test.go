package stack

import (
	"os"
	"testing"
	"time"
)

func TestProcessCPUTimeGrowsWithWork(t *testing.T) {
	before, err := ProcessCPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	selfBefore, err := SelfCPUTime()
	if err != nil {
		t.Fatal(err)
	}
	// Burn about 150 ms of CPU.
	x := 0
	for end := time.Now().Add(150 * time.Millisecond); time.Now().Before(end); {
		for i := range 10000 {
			x += i
		}
	}
	_ = x
	after, err := ProcessCPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	selfAfter, err := SelfCPUTime()
	if err != nil {
		t.Fatal(err)
	}
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
