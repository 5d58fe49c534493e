package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lookalike-dev/lookalike/e2e/internal/stack"
)

// TestAdminKeysAcrossServices runs the gateway and the indexer's admin API
// as real processes with the same rotated key list in the same setting
// (LOOKALIKE_ADMIN_KEY=old,new): both keys are accepted by both, anything
// else refused. The gateway, told the loopback peer is its ingress
// (GATEWAY_TRUSTED_PROXIES), limits wrong keys per client named in
// X-Forwarded-For: the guesser gets 429 even with the right key, another
// shopper through the same proxy does not. A spec naming an upload path is
// refused by the indexer without quoting the file.
func TestAdminKeysAcrossServices(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs in the full suite")
	}
	const oldKey, newKey = "rotation-old-key-0123456789", "rotation-new-key-0123456789"
	keys := "LOOKALIKE_ADMIN_KEY=" + oldKey + "," + newKey
	s := stack.New(t, stack.Options{Extra: map[string][]string{"gateway": {
		keys, "GATEWAY_TRUSTED_PROXIES=127.0.0.1", "LOOKALIKE_ADMIN_AUTH_FAILURE_BURST=3",
	}}})
	// The gateway alone: its downstreams are not started, so an admitted
	// admin request ends in 503, a refused one in 401 or 429.
	gw := s.Procs["gateway"]
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, gw.URL(), gw.Log)

	idxAddr := stack.FreeAddr(t)
	idxLog := filepath.Join(s.Dir, "indexer-serve.log")
	logf, err := os.Create(idxLog)
	if err != nil {
		t.Fatal(err)
	}
	idx := exec.Command(filepath.Join(s.Env.BinDir, "indexer"), "serve", "--addr="+idxAddr,
		"--state-dir="+filepath.Join(s.Dir, "jobs"), "--catalog-root="+filepath.Dir(s.Env.CatalogJL), "--drain-delay=0s")
	idx.Env = append(os.Environ(), keys)
	idx.Stdout, idx.Stderr = logf, logf
	if err := idx.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idx.Process.Kill(); idx.Wait(); logf.Close() })
	waitHealthy(t, "http://"+idxAddr, idxLog)

	call := func(method, url, xff, auth, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	gwAdmin := gw.URL() + "/v1/products/SKU-1"
	idxJobs := "http://" + idxAddr + "/v1/index/jobs"
	for i, tc := range []struct {
		auth            string
		gateway, indexr int
	}{
		{"Bearer " + oldKey, 503, 200},
		{"Bearer " + newKey, 503, 200},
		{"bearer " + newKey, 503, 200},
		{"Bearer " + s.AdminKey, 401, 401},
		{"Bearer " + oldKey + "," + newKey, 401, 401},
		{"", 401, 401},
	} {
		// Each case from its own client, so no case spends another's budget.
		client := fmt.Sprintf("198.51.100.%d", 10+i)
		if code, b := call("GET", gwAdmin, client, tc.auth, ""); code != tc.gateway {
			t.Errorf("gateway with %q: %d %s, want %d", tc.auth, code, b, tc.gateway)
		}
		if code, b := call("GET", idxJobs, "", tc.auth, ""); code != tc.indexr {
			t.Errorf("indexer with %q: %d %s, want %d", tc.auth, code, b, tc.indexr)
		}
	}

	const guesser, shopper = "203.0.113.66", "203.0.113.7"
	for i := range 3 {
		if code, b := call("GET", gwAdmin, guesser, fmt.Sprintf("Bearer guess-%d-0123456789", i), ""); code != 401 {
			t.Fatalf("guess %d: %d %s", i, code, b)
		}
	}
	if code, b := call("GET", gwAdmin, guesser, "Bearer "+newKey, ""); code != 429 || !strings.Contains(b, "too_many_auth_failures") {
		t.Fatalf("the guesser with the right key: %d %s, want 429 too_many_auth_failures", code, b)
	}
	if code, b := call("GET", gwAdmin, shopper, "Bearer "+newKey, ""); code != 503 {
		t.Fatalf("another client through the same proxy: %d %s, want 503 (admitted)", code, b)
	}

	code, b := call("POST", idxJobs, "", "Bearer "+newKey, `{"catalog_path":"catalog.jsonl","upload":"../../../../etc/passwd"}`)
	if code != 400 || !strings.Contains(b, "bad_job_spec") || strings.Contains(b, "root:") {
		t.Fatalf("indexer spec naming an upload: %d %s", code, b)
	}
}

// waitHealthy polls /healthz (the process is live; readiness would need the
// downstreams).
func waitHealthy(t *testing.T, base, log string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s not healthy:\n%s", base, stack.Tail(log, 20))
}
