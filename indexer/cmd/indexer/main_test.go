package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lookalike-dev/lookalike/indexer/internal/job"
	"github.com/lookalike-dev/lookalike/indexer/internal/testcat"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1/embedv1test"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1/preprocessv1test"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1/searchv1test"
)

// TestMain lets the test binary act as the indexer CLI in a child process.
func TestMain(m *testing.M) {
	if os.Getenv("INDEXER_TEST_MAIN") == "1" {
		os.Args = append([]string{"indexer"}, strings.Fields(os.Getenv("INDEXER_TEST_ARGS"))...)
		main()
		return
	}
	os.Exit(m.Run())
}

const model = "fake-a-v1"

type stack struct {
	pre *preprocessv1test.Server
	emb *embedv1test.Server
	sea *searchv1test.Server
}

func newStack(t *testing.T) *stack {
	s := &stack{pre: preprocessv1test.New().Serve(), emb: embedv1test.New(testcat.Models(16, model)...).Serve(), sea: searchv1test.New().Serve()}
	t.Cleanup(func() { s.pre.Close(); s.emb.Close(); s.sea.Close() })
	return s
}

func (s *stack) cmd(catalog, stateDir string, extra ...string) *exec.Cmd {
	args := []string{"run", "--catalog=" + catalog, "--state-dir=" + stateDir, "--model=" + model,
		"--preprocess-url=" + s.pre.URL(), "--embed-url=" + s.emb.URL(), "--search-url=" + s.sea.URL(),
		"--embed-batch=8", "--preprocess-batch=4", "--upsert-batch=8", "--checkpoint-every=30ms", "--linger=5ms",
		"--max-error-ratio=0.5", "--log-level=warn"}
	args = append(args, extra...)
	c := exec.Command(os.Args[0])
	c.Env = append(os.Environ(), "INDEXER_TEST_MAIN=1", "INDEXER_TEST_ARGS="+strings.Join(args, " "))
	return c
}

// summary runs c to its end and returns its exit code and last stdout line.
func runCmd(t *testing.T, c *exec.Cmd) (int, job.Summary, string) {
	t.Helper()
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var sum job.Summary
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if last := lines[len(lines)-1]; last != "" {
		if err := json.Unmarshal([]byte(last), &sum); err != nil {
			t.Fatalf("last stdout line is not a summary: %q (%v)", last, err)
		}
	}
	return code, sum, errb.String()
}

// killAt starts c and SIGKILLs it once search holds at least n points.
func killAt(t *testing.T, s *stack, c *exec.Cmd, coll string, n int) {
	t.Helper()
	c.Stdout, c.Stderr = nil, nil
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for s.sea.Count(coll) < n {
		if time.Now().After(deadline) {
			c.Process.Kill()
			t.Fatalf("search reached only %d points", s.sea.Count(coll))
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := c.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = c.Wait()
	if st := c.ProcessState; st == nil || st.Success() {
		t.Fatalf("process was not killed: %v", st)
	}
}

func readReport(t *testing.T, dir string) []job.Entry {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, job.ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []job.Entry
	if err := job.ReadReport(bufio.NewReader(f), func(e job.Entry) error { out = append(out, e); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// The kill test: SIGKILL the CLI mid-job (twice), resume, and get exactly
// the distinct SKUs minus the failed items, each failure listed once.
func TestKillAndResumeGivesExactCounts(t *testing.T) {
	s := newStack(t)
	s.emb.SetLatency(15 * time.Millisecond) // about 500 rows/s: the kill lands mid-job
	catDir := t.TempDir()
	path, want, err := testcat.Write(catDir, testcat.Options{Good: 300, Bad: true})
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "state")
	coll := "products__" + model
	total := len(want.Indexed)

	killAt(t, s, s.cmd(path, state), coll, total*3/10)
	cp, err := job.ReadCheckpoint(state)
	if err != nil || cp.State != job.StateRunning {
		t.Fatalf("after kill: checkpoint %+v, %v", cp, err)
	}
	// Without --resume a state dir with a checkpoint is refused (exit 2).
	if code, _, stderr := runCmd(t, s.cmd(path, state)); code != exitRefused {
		t.Fatalf("run over a checkpoint without --resume: exit %d, stderr %s", code, stderr)
	}
	killAt(t, s, s.cmd(path, state, "--resume"), coll, total*6/10)
	code, sum, stderr := runCmd(t, s.cmd(path, state, "--resume", "--progress"))
	if code != exitOK || sum.State != job.StateCompleted || !sum.Resumed {
		t.Fatalf("final run: exit %d, summary %+v, stderr %s", code, sum, stderr)
	}
	if !strings.Contains(stderr, "indexing") {
		t.Errorf("no progress bar on stderr: %q", stderr)
	}

	// Exact count, no duplicates, right payloads.
	points := s.sea.Points(coll)
	if len(points) != total {
		t.Errorf("search holds %d points, want %d", len(points), total)
	}
	for sku, title := range want.Indexed {
		if p, ok := points[sku]; !ok || p.Payload["title"] != title {
			t.Errorf("SKU %s: present %v, payload %v, want title %q", sku, ok, p.Payload, title)
		}
	}
	c := sum.Counts
	if c.Done != total || c.Failed != len(want.Failed) || c.Items != want.Items || c.Items-c.Failed != len(points) {
		t.Errorf("counts %+v, want done %d failed %d items %d", c, total, len(want.Failed), want.Items)
	}
	// Every line reported exactly once; failures with their codes.
	seen := map[int]int{}
	failed := map[int]string{}
	for _, e := range readReport(t, state) {
		seen[e.Line]++
		if e.Status == job.StatusFailed {
			failed[e.Line] = e.Code
			if e.Reason == "" {
				t.Errorf("line %d failed without a reason", e.Line)
			}
		}
	}
	if len(seen) != want.Lines {
		t.Errorf("report covers %d lines, catalog has %d", len(seen), want.Lines)
	}
	for l, n := range seen {
		if n != 1 {
			t.Errorf("line %d reported %d times", l, n)
		}
	}
	if fmt.Sprint(failed) != fmt.Sprint(want.Failed) {
		t.Errorf("failed %v, want %v", failed, want.Failed)
	}
	// Replays happened (the kills interrupted work) yet left no duplicate.
	replays := 0
	for _, n := range s.sea.Writes(coll) {
		replays += n - 1
	}
	t.Logf("points %d, replayed writes %d, embed calls %d", len(points), replays, s.emb.Calls())
}

func TestExitCodes(t *testing.T) {
	s := newStack(t)
	path, _, err := testcat.Write(t.TempDir(), testcat.Options{Good: 40})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("no catalog", func(t *testing.T) {
		if code, _, _ := runCmd(t, s.cmd("", t.TempDir())); code != exitRefused {
			t.Fatalf("exit %d", code)
		}
	})
	t.Run("unknown model", func(t *testing.T) {
		if code, _, _ := runCmd(t, s.cmd(path, t.TempDir(), "--model=nope")); code != exitFailed {
			t.Fatalf("exit %d", code)
		}
	})
	t.Run("unknown mode", func(t *testing.T) {
		c := s.cmd(path, t.TempDir())
		c.Env = append(c.Env, "INDEXER_TEST_ARGS=frobnicate")
		if code, _, _ := runCmd(t, c); code != exitRefused {
			t.Fatalf("exit %d", code)
		}
	})
	t.Run("canceled then resumed", func(t *testing.T) {
		dir := t.TempDir()
		code, sum, _ := runCmd(t, s.cmd(path, dir, "--stop-after=10"))
		if code != exitCanceled || sum.State != job.StateCanceled {
			t.Fatalf("exit %d %+v", code, sum)
		}
		code, sum, _ = runCmd(t, s.cmd(path, dir, "--resume"))
		if code != exitOK || sum.Counts.Done != 40 {
			t.Fatalf("exit %d %+v", code, sum)
		}
	})
	t.Run("sigterm", func(t *testing.T) {
		s.emb.SetLatency(200 * time.Millisecond)
		defer s.emb.SetLatency(0)
		dir := t.TempDir()
		c := s.cmd(path, dir)
		var out bytes.Buffer
		c.Stdout = &out
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		// SIGTERM once the job is running (a checkpoint exists).
		for i := 0; i < 1000; i++ {
			if _, err := os.Stat(filepath.Join(dir, job.CheckpointFile)); err == nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		c.Process.Signal(syscall.SIGTERM)
		err := c.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitCanceled {
			t.Fatalf("SIGTERM: %v, stdout %s", err, out.String())
		}
		if cp, err := job.ReadCheckpoint(dir); err != nil || cp.State != job.StateCanceled {
			t.Fatalf("checkpoint after SIGTERM: %+v %v", cp, err)
		}
	})
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// serve mode end to end: readiness, auth with a rotated key list (the
// setting the gateway reads), a job through the API, metrics, and a clean
// exit on SIGTERM.
func TestServeMode(t *testing.T) {
	const oldKey, newKey = "k3y-old-0123456789", "k3y-new-0123456789"
	s := newStack(t)
	catDir := t.TempDir()
	_, want, err := testcat.Write(catDir, testcat.Options{Good: 25, Bad: true})
	if err != nil {
		t.Fatal(err)
	}
	addr, metricsAddr := freeAddr(t), freeAddr(t)
	c := s.cmd("", t.TempDir(), "--addr="+addr, "--metrics-addr="+metricsAddr, "--catalog-root="+catDir, "--drain-delay=0s")
	c.Env = append(c.Env, "INDEXER_TEST_ARGS=serve "+strings.TrimPrefix(envArg(c.Env), "run "), "LOOKALIKE_ADMIN_KEY="+oldKey+","+newKey)
	var errb bytes.Buffer
	c.Stderr = &errb
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Process.Kill()
	base := "http://" + addr
	ready := false
	for range 500 {
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				ready = true
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !ready {
		t.Fatalf("serve not ready: %s", errb.String())
	}
	call := func(method, path, body, key string) (int, []byte) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	for key, want := range map[string]int{"wrong": 401, oldKey: 200, newKey: 200, oldKey + "," + newKey: 401} {
		if code, _ := call("GET", "/v1/index/jobs", "", key); code != want {
			t.Fatalf("key %q: %d, want %d", key, code, want)
		}
	}
	if code, b := call("POST", "/v1/index/jobs", `{"catalog_path":"catalog.jsonl","upload":"../../../../etc/passwd"}`, newKey); code != 400 || bytes.Contains(b, []byte("root:")) {
		t.Fatalf("spec naming an upload: %d %s", code, b)
	}
	code, b := call("POST", "/v1/index/jobs", `{"catalog_path":"catalog.jsonl"}`, oldKey)
	if code != 202 {
		t.Fatalf("POST: %d %s", code, b)
	}
	var in struct {
		ID     string     `json:"id"`
		State  string     `json:"state"`
		Counts job.Counts `json:"counts"`
	}
	json.Unmarshal(b, &in)
	for range 1000 {
		_, b = call("GET", "/v1/index/jobs/"+in.ID, "", newKey)
		json.Unmarshal(b, &in)
		if in.State == job.StateCompleted || in.State == job.StateFailed {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if in.State != job.StateCompleted || in.Counts.Done != len(want.Indexed) || in.Counts.Failed != len(want.Failed) {
		t.Fatalf("job: %s", b)
	}
	if resp, err := http.Get(base + "/metrics"); err != nil || resp.StatusCode == http.StatusOK {
		t.Fatalf("public /metrics: %v %v, want a refusal (internal listener only)", resp, err)
	} else {
		resp.Body.Close()
	}
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(mb), "lookalike_indexer_items_total") || !strings.Contains(string(mb), `status="failed"`) {
		t.Errorf("metrics lack item counters:\n%s", mb)
	}
	c.Process.Signal(syscall.SIGTERM)
	if err := c.Wait(); err != nil {
		t.Fatalf("serve exit on SIGTERM: %v\n%s", err, lastLines(errb.String(), 5))
	}
}

func envArg(env []string) string {
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "INDEXER_TEST_ARGS="); ok {
			return v
		}
	}
	return ""
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}
