package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/lookalike-dev/lookalike/e2e/internal/stack"
)

// TestBrowserAgainstRealStack runs the gateway's headless-Chromium test (upload
// a catalog photo, see its product first, click "More like this") against the
// four real services with the whole demo catalog indexed.
// LOOKALIKE_SCREENSHOT=path also saves a screenshot of the page.
func TestBrowserAgainstRealStack(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs in the full suite")
	}
	s := stack.New(t, stack.Options{})
	s.Start(t)
	c := stack.NewClient(s.Gateway(), s.AdminKey)
	products, err := stack.ReadJSONL[stack.Product](s.Env.CatalogJL)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.IndexAll(filepath.Dir(s.Env.CatalogJL), products, 4); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "test", "-count=1", "-run", "^TestBrowserSearchAndMoreLikeThis$", "-v", "./internal/web")
	cmd.Dir = filepath.Join(s.Env.Repo, "gateway")
	cmd.Env = append(os.Environ(), "LOOKALIKE_BROWSER_GATEWAY="+s.Gateway(), "LOOKALIKE_SHARED="+s.Env.Shared)
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("browser test against the real stack: %v", err)
	}
}
