package e2e

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lookalike-dev/lookalike/e2e/internal/stack"
)

// TestIndexerKillAndResumeRealStack indexes the demo catalog with the
// indexer CLI against the real services, SIGKILLs it about half way, resumes
// it, and checks the exact count, that the report names every product once,
// and that every product is searchable as itself.
func TestIndexerKillAndResumeRealStack(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs in the full suite")
	}
	s := stack.New(t, stack.Options{})
	s.Start(t)
	products, imgs, skus := loadCatalog(t, s, 50)
	state := filepath.Join(s.Dir, "job")
	args := []string{"run", "--catalog", s.Env.CatalogJL, "--state-dir", state,
		"--preprocess-url", s.Procs["preprocess"].URL(), "--embed-url", s.Procs["embed"].URL(), "--search-url", s.Procs["search"].URL(),
		"--checkpoint-every", "100ms"}
	bin := filepath.Join(s.Env.BinDir, "indexer")

	// First run: kill -9 once about half the products are acknowledged.
	cmd := exec.Command(bin, args...)
	cmd.Dir = s.Env.Repo
	logf, _ := os.Create(filepath.Join(s.Dir, "indexer-1.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := stack.NewClient(s.Gateway(), s.AdminKey)
	deadline := time.Now().Add(3 * time.Minute)
	killedAt := int64(-1)
	for time.Now().Before(deadline) {
		n := countPoints(t, s)
		if n >= int64(len(products)/2) {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			killedAt = n
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Wait()
	logf.Close()
	if killedAt < 0 {
		t.Fatalf("the indexer never reached half the catalog:\n%s", stack.Tail(filepath.Join(s.Dir, "indexer-1.log"), 20))
	}
	if killedAt >= int64(len(products)) {
		t.Fatalf("the indexer finished (%d) before it could be killed", killedAt)
	}

	// Resume: the final count is exact and every line is reported once.
	cmd = exec.Command(bin, append(args, "--resume")...)
	cmd.Dir = s.Env.Repo
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var sum struct {
		State  string         `json:"state"`
		Counts map[string]int `json:"counts"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &sum); err != nil {
		t.Fatalf("summary line %q: %v", lines[len(lines)-1], err)
	}
	if sum.State != "completed" || sum.Counts["failed"] != 0 {
		t.Fatalf("summary after resume: %+v", sum)
	}
	if n := countPoints(t, s); n != int64(len(products)) {
		t.Fatalf("after kill at %d and resume: %d points, want exactly %d", killedAt, n, len(products))
	}
	f, err := os.Open(filepath.Join(state, "report.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r struct {
			SKU string `json:"sku"`
		}
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.SKU != "" {
			seen[r.SKU]++
		}
	}
	for _, sku := range skus {
		if seen[sku] != 1 {
			t.Errorf("report names %s %d times, want once", sku, seen[sku])
		}
	}
	for i, img := range imgs {
		r, err := c.SearchImage(img, "?top_k=1")
		if err != nil || len(r.Results) == 0 || r.Results[0].SKU != skus[i] {
			t.Errorf("%s not found as itself after resume: %+v %v", skus[i], r.Results, err)
		}
	}
	t.Logf("indexer killed at %d/%d acknowledged, resumed: %d points, 0 duplicates, 0 lost", killedAt, len(products), len(products))
}

// countPoints asks search for the catalog's count (0 before the collection exists).
func countPoints(t *testing.T, s *stack.Stack) int64 {
	t.Helper()
	resp, err := http.Get(s.Procs["search"].URL() + "/v1/catalogs/products/count")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var cr struct {
		Count int64 `json:"count"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&cr) != nil {
		return 0
	}
	return cr.Count
}
