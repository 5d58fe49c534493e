package turbojpeg

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestDecodeHoldsNoP checks that a decode waits in the network poller (as
// goroutine state "IO wait") rather than in a cgo call ("syscall"), which
// would hold its P for the whole decode and keep sysmon retaking it.
func TestDecodeHoldsNoP(t *testing.T) {
	if !Available() {
		t.Skip("libjpeg-turbo not linked in (CGO_ENABLED=0)")
	}
	jpg := catalogJPEGs(t, "lm-wall-033.jpg")[0] // 13 MP: ~100 ms at full scale
	done := make(chan error, 1)
	go func() {
		_, _, _, err := DecodeRGB(context.Background(), jpg, Factor{Num: 1, Denom: 1}, false, nil)
		done <- err
	}()
	states := map[string]int{}
	buf := make([]byte, 1<<20)
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("states of the decoding goroutine seen: %v", states)
			if states["IO wait"] == 0 || states["syscall"] > states["IO wait"]/4 {
				t.Fatalf("the decoding goroutine was seen %v: it should wait in the poller (IO wait), not in a cgo call (syscall)", states)
			}
			return
		default:
		}
		for _, g := range bytes.Split(buf[:runtime.Stack(buf, true)], []byte("\n\n")) {
			if !bytes.Contains(g, []byte("turbojpeg.decodeOffP")) {
				continue
			}
			head, _, _ := strings.Cut(string(g), "\n") // goroutine 7 [IO wait]:
			if i, j := strings.IndexByte(head, '['), strings.IndexByte(head, ']'); i >= 0 && j > i {
				state, _, _ := strings.Cut(head[i+1:j], ",") // [IO wait, 2 minutes]
				states[state]++
			}
		}
		time.Sleep(time.Millisecond)
	}
}
