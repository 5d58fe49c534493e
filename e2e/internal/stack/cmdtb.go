package stack

import (
	"fmt"
	"os"
	"sync"
)

// CmdTB runs a stack from a command: Fatal exits after cleanups.
type CmdTB struct {
	mu       sync.Mutex
	cleanups []func()
	failed   bool
	dirs     []string
}

// Helper does nothing.
func (c *CmdTB) Helper() {}

// Logf prints to stderr.
func (c *CmdTB) Logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

// Fatal prints, cleans up and exits 1.
func (c *CmdTB) Fatal(args ...any) { c.fail(fmt.Sprint(args...)) }

// Fatalf prints, cleans up and exits 1.
func (c *CmdTB) Fatalf(format string, args ...any) { c.fail(fmt.Sprintf(format, args...)) }

func (c *CmdTB) fail(msg string) {
	c.mu.Lock()
	c.failed = true
	c.mu.Unlock()
	fmt.Fprintln(os.Stderr, "FATAL:", msg)
	c.Close()
	os.Exit(1)
}

// Cleanup registers f to run on Close, last first.
func (c *CmdTB) Cleanup(f func()) {
	c.mu.Lock()
	c.cleanups = append(c.cleanups, f)
	c.mu.Unlock()
}

// TempDir makes a temporary folder removed on Close.
func (c *CmdTB) TempDir() string {
	d, err := os.MkdirTemp("", "lookalike-")
	if err != nil {
		c.Fatal(err)
	}
	c.mu.Lock()
	c.dirs = append(c.dirs, d)
	c.mu.Unlock()
	return d
}

// Failed reports whether Fatal was called.
func (c *CmdTB) Failed() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.failed }

// Close runs the cleanups and removes the temporary folders.
func (c *CmdTB) Close() {
	c.mu.Lock()
	fs, ds := c.cleanups, c.dirs
	c.cleanups, c.dirs = nil, nil
	c.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
	for _, d := range ds {
		_ = os.RemoveAll(d)
	}
}
