package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"

	"github.com/lookalike-dev/lookalike/preprocess/internal/imagecorpus"
)

// serveEnv makes the test binary run the service instead of the tests: the
// tests start it as a process of its own, whose memory they can read.
const serveEnv = "PREPROCESS_TEST_SERVE"

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func TestGoMemoryLimit(t *testing.T) {
	tests := []struct {
		name          string
		limit, decode int64
		env           string
		want          int64
		ok            bool
	}{
		{"no container limit", 0, 384 << 20, "", 0, false},
		{"GOMEMLIMIT set", 1 << 30, 384 << 20, "700MiB", 0, false},
		{"1Gi less the decode memory", 1 << 30, 384 << 20, "", (1<<30)/10*9 - 384<<20, true},
		{"decode memory near the limit", 512 << 20, 450 << 20, "", 128 << 20, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := goMemoryLimit(tc.limit, tc.decode, tc.env)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("got %d %v, want %d %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// service is the preprocess service running in a process of its own.
type service struct {
	url string
	pid int
}

func startService(t *testing.T) *service {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), serveEnv+"=1", "PREPROCESS_ADDR=127.0.0.1:0", "MALLOC_ARENA_MAX=1",
		"PREPROCESS_MEMORY_LIMIT=1073741824", "PREPROCESS_DRAIN_DELAY=0s", "OTEL_SDK_DISABLED=true")
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var l struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "listening" {
				select {
				case addr <- l.Addr:
				default:
				}
			}
		}
	}()
	s := &service{pid: cmd.Process.Pid}
	select {
	case a := <-addr:
		s.url = "http://" + a
	case <-time.After(60 * time.Second):
		t.Fatal("the service did not start listening within 60 s")
	}
	for deadline := time.Now().Add(60 * time.Second); ; {
		resp, err := http.Get(s.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the service was not ready within 60 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hwm is the service's peak resident memory (VmHWM) in bytes.
func (s *service) hwm(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/pid/status")
	return 0
}

// preprocess posts one image and returns the status and the error code.
func (s *service) preprocess(t *testing.T, data []byte) (int, string) {
	t.Helper()
	resp, err := http.Post(s.url+preprocessv1.RoutePreprocess, "application/octet-stream", bytes.NewReader(data))
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var env struct{ Error struct{ Code string } }
	_ = json.Unmarshal(b, &env)
	return resp.StatusCode, env.Error.Code
}

type bomb struct {
	name string
	data []byte
	code string
}

// bombCorpus: tiny JPEGs declaring 7000x7000 (gray, YCbCr, CMYK, YCCK;
// baseline and progressive; truncated and complete), progressive ones with
// all the data their frame needs but more decode memory than one image
// may take, and the same over-budget frame in GIF, PNG and WebP headers.
func bombCorpus() []bomb {
	var out []bomb
	for _, c := range imagecorpus.Bombs(7000, 7000) {
		out = append(out, bomb{c.Name(), imagecorpus.Craft(c), preprocessv1.CodeCorruptImage})
	}
	for _, c := range []imagecorpus.Crafted{
		{W: 7000, H: 7000, Comps: 3, Adobe: -1, Progressive: true, Sized: true},
		{W: 7000, H: 7000, Comps: 4, Adobe: 0, Progressive: true, Sized: true},
		{W: 7000, H: 7000, Comps: 4, Adobe: 2, Progressive: true, Sized: true},
	} {
		out = append(out, bomb{c.Name(), imagecorpus.Craft(c), preprocessv1.CodeImageTooComplex})
	}
	var gif []byte
	for _, c := range imagecorpus.Generate() {
		if c.Name == "gif" {
			gif = c.Data
		}
	}
	out = append(out,
		// A 96x64 frame on a 7000x7000 screen is a valid image, read
		// without a screen-sized copy.
		bomb{"gif-96x64-frame-on-7000x7000-screen", imagecorpus.GIFWithScreen(gif, 7000, 7000), ""},
		bomb{"gif-7000x7000-frame", gifFrameBomb(7000, 7000), preprocessv1.CodeCorruptImage},
		bomb{"png-7000x7000-rgba", imagecorpus.PNGBomb(7000, 7000), preprocessv1.CodeCorruptImage},
		bomb{"webp-7000x7000", imagecorpus.WebPBomb(7000, 7000), preprocessv1.CodeImageTooComplex},
	)
	return out
}

// gifFrameBomb is a GIF whose first frame declares w x h, with two bytes
// of LZW data.
func gifFrameBomb(w, h int) []byte {
	le := func(v int) []byte { return []byte{byte(v), byte(v >> 8)} }
	b := append([]byte("GIF89a"), le(w)...)
	b = append(b, le(h)...)
	b = append(b, 0x80, 0, 0, 0, 0, 0, 255, 255, 255) // a 2-colour global table
	b = append(b, 0x2C, 0, 0, 0, 0)
	b = append(b, le(w)...)
	b = append(b, le(h)...)
	return append(b, 0, 2, 2, 0x4C, 0x01, 0, 0x3B)
}

// TestDecodeBombsKeepMemoryFlat sends the bomb corpus to a running service
// from 8 clients at once, three times over: every upload gets its 4xx code
// (the one valid image among them, its 200) and the process's peak
// resident memory grows by less than 150 MiB.
func TestDecodeBombsKeepMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the service")
	}
	s := startService(t)
	bombs := bombCorpus()
	before := s.hwm(t)
	work := make(chan bomb)
	var wg sync.WaitGroup
	var mu sync.Mutex
	sent := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				st, code := s.preprocess(t, b.data)
				if b.code == "" && st != http.StatusOK {
					t.Errorf("%s: got %d %q, want 200", b.name, st, code)
				}
				if b.code != "" && (st < 400 || st > 499 || code != b.code) {
					t.Errorf("%s: got %d %q, want 4xx %s", b.name, st, code, b.code)
				}
				mu.Lock()
				sent++
				mu.Unlock()
			}
		}()
	}
	for range 3 {
		for _, b := range bombs {
			work <- b
		}
	}
	close(work)
	wg.Wait()
	after := s.hwm(t)
	t.Logf("%d uploads (%d cases) from 8 clients: VmHWM %.1f -> %.1f MiB (+%.1f MiB)", sent, len(bombs),
		float64(before)/(1<<20), float64(after)/(1<<20), float64(after-before)/(1<<20))
	if after-before >= 150<<20 {
		t.Fatalf("VmHWM grew by %.0f MiB, want < 150 MiB", float64(after-before)/(1<<20))
	}
}

// photo is a 1600x1200 JPEG with detail, a normal query.
func photo(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 1600, 1200))
	for y := range 1200 {
		for x := range 1600 {
			img.SetRGBA(x, y, color.RGBA{uint8(x ^ y), uint8(x * y >> 4), uint8(x + 3*y), 255})
		}
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestScanBombRefusedFast: progressive JPEGs of a few KB whose thousands
// of end-of-band-run AC scans (or a few hundred over every block, again
// and again) would keep a decoder busy for seconds are refused in under
// 100 ms, and a normal query sent right after is answered in its normal
// time.
func TestScanBombRefusedFast(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the service")
	}
	s := startService(t)
	query := photo(t)
	timed := func(data []byte) (time.Duration, int, string) {
		start := time.Now()
		st, code := s.preprocess(t, data)
		return time.Since(start), st, code
	}
	var normal time.Duration
	for i := range 4 {
		d, st, _ := timed(query)
		if st != http.StatusOK {
			t.Fatalf("normal query: %d", st)
		}
		if i > 0 && (normal == 0 || d < normal) {
			normal = d // the fastest of three, after a first one
		}
	}
	for _, c := range []imagecorpus.Crafted{
		{W: 3000, H: 3000, Comps: 1, Adobe: -1, Progressive: true, NoDC: true, ACScans: 3000},
		{W: 8000, H: 6000, Comps: 1, Adobe: -1, Progressive: true, NoDC: true, ACScans: 250},
	} {
		bomb := imagecorpus.Craft(c)
		d, st, code := timed(bomb)
		t.Logf("%s (%d bytes): %d %s in %v", c.Name(), len(bomb), st, code, d)
		if st != http.StatusUnprocessableEntity || code != preprocessv1.CodeTooManyScans {
			t.Errorf("%s: got %d %q, want 422 %s", c.Name(), st, code, preprocessv1.CodeTooManyScans)
		}
		if d >= 100*time.Millisecond {
			t.Errorf("%s: refused in %v, want < 100 ms", c.Name(), d)
		}
		next, st, _ := timed(query)
		t.Logf("normal query right after: %v (normally %v)", next, normal)
		if st != http.StatusOK {
			t.Errorf("normal query after the bomb: %d", st)
		}
		if next > 5*normal+200*time.Millisecond {
			t.Errorf("normal query after the bomb took %v, normally %v", next, normal)
		}
	}
}
