package web_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/lookalike-dev/lookalike/gateway/internal/gatewaytest"
	"github.com/lookalike-dev/lookalike/gateway/internal/service"
	"github.com/lookalike-dev/lookalike/shared/catalog"
)

// sharedDir is the read-only data folder beside the repository.
func sharedDir(t *testing.T) string {
	if d := os.Getenv("LOOKALIKE_SHARED"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	d := filepath.Join(filepath.Dir(file), "..", "..", "..", "..", "shared")
	if _, err := os.Stat(filepath.Join(d, "catalog", "catalog.jsonl")); err != nil {
		t.Fatalf("shared data not found at %s (set LOOKALIKE_SHARED): %v", d, err)
	}
	return d
}

// chromium finds the browser; a missing one fails the test unless the
// caller opts out loudly with LOOKALIKE_SKIP_BROWSER=1.
func chromium(t *testing.T) string {
	for _, p := range []string{os.Getenv("CHROMIUM"), "chromium", "chromium-browser"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("LOOKALIKE_SKIP_BROWSER") == "1" {
		t.Skip("SKIPPED: no chromium and LOOKALIKE_SKIP_BROWSER=1")
	}
	t.Fatal("chromium not found: run `make setup-gateway` (apt-get install -y chromium) or set CHROMIUM; LOOKALIKE_SKIP_BROWSER=1 skips this test")
	return ""
}

// indexCatalog indexes the demo catalog through the gateway's admin API.
func indexCatalog(t *testing.T, env *gatewaytest.Env, dir string) []catalog.Product {
	f, err := os.Open(filepath.Join(dir, "catalog.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var products []catalog.Product
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		p, lerr := catalog.ParseJSONLine(sc.Bytes())
		if lerr != nil {
			t.Fatalf("catalog line: %v", lerr)
		}
		img, err := os.ReadFile(filepath.Join(dir, p.Image))
		if err != nil {
			t.Fatal(err)
		}
		wd, _ := p.Extra["width"].(float64)
		ht, _ := p.Extra["height"].(float64)
		if len(img) > 1<<20 || wd*ht > 2.5e6 || len(products) >= 24 {
			continue // the fake preprocess decodes in pure Go; keep the test quick
		}
		md, _ := json.Marshal(p.Payload())
		var body bytes.Buffer
		w := multipart.NewWriter(&body)
		w.WriteField("sku", p.SKU)
		w.WriteField("metadata", string(md))
		fw, _ := w.CreateFormFile("image", filepath.Base(p.Image))
		fw.Write(img)
		w.Close()
		resp := env.Do(t, http.MethodPost, "/v1/products", w.FormDataContentType(), body.Bytes(), gatewaytest.AdminKey)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("indexing %s: %d", p.SKU, resp.StatusCode)
		}
		products = append(products, p)
	}
	t.Logf("indexed %d catalog products through the admin API", len(products))
	if len(products) < 10 {
		t.Fatalf("only %d catalog products", len(products))
	}
	return products
}

// catalogProduct returns the i-th product of the demo catalog.
func catalogProduct(t *testing.T, dir string, i int) catalog.Product {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "catalog.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if i >= len(lines) {
		t.Fatalf("catalog has %d lines", len(lines))
	}
	p, lerr := catalog.ParseJSONLine([]byte(lines[i]))
	if lerr != nil {
		t.Fatalf("catalog line %d: %v", i, lerr)
	}
	return p
}

// TestBrowserSearchAndMoreLikeThis drives the page in headless Chromium:
// upload a catalog photo, see its product first (with its served image,
// title and price), then click "More like this".
func TestBrowserSearchAndMoreLikeThis(t *testing.T) {
	exe := chromium(t)
	dir := filepath.Join(sharedDir(t), "catalog")
	var baseURL string
	var target catalog.Product
	if real := os.Getenv("LOOKALIKE_BROWSER_GATEWAY"); real != "" {
		// The end-to-end suite runs this test against the real services,
		// with the whole demo catalog already indexed.
		baseURL, target = real, catalogProduct(t, dir, 7)
	} else {
		env := gatewaytest.Start(t, gatewaytest.Options{CatalogDir: dir, Config: func(c *service.Config) {
			c.Limits.RequestTimeout = 30 * time.Second
			c.Preprocess.Timeout, c.Embed.Timeout, c.Search.Timeout = 20*time.Second, 20*time.Second, 20*time.Second
		}})
		baseURL, target = env.URL, indexCatalog(t, env, dir)[7]
	}

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1200, 900),
		chromedp.UserDataDir(t.TempDir()),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	// The first call starts the browser and must not carry a timeout.
	if err := chromedp.Do(bctx, chromedp.Navigate(baseURL+"/")); err != nil {
		t.Fatalf("opening the page: %v", err)
	}
	ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()

	status := func() string {
		s, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#status")))
		return s
	}
	// Record the headers of the page's queries (the canary split keys on
	// Lookalike-Client-Id).
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { window.__sent = []; const f = window.fetch; window.fetch = (u, o) => { window.__sent.push((o && o.headers) || {}); return f(u, o); }; return true; })()`)); err != nil {
		t.Fatalf("wrapping fetch: %v", err)
	}
	err := chromedp.Do(ctx,
		chromedp.WaitReady(chromedp.CSS("#drop")),
		chromedp.SetUploadFiles(chromedp.CSS("#file"), []string{filepath.Join(dir, target.Image)}, chromedp.NodeReady),
		chromedp.WaitVisible(chromedp.CSS("#results .result")),
	)
	if err != nil {
		t.Fatalf("upload search: %v (status %q)", err, status())
	}
	sent, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[window.__sent.length ? (window.__sent[0]["Lookalike-Client-Id"] || "") : "none", localStorage.getItem("lookalike-client-id") || ""]`))
	if err != nil || len(sent) != 2 || len(sent[0]) != 32 || sent[0] != sent[1] {
		t.Fatalf("[header sent, id stored] = %q (%v): want the same 32 hex digits twice", sent, err)
	}
	first, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS("#results .result:first-child"), "data-sku"))
	if err != nil || first.Value != target.SKU {
		t.Fatalf("first result %q (%v), want %q (status %q)", first.Value, err, target.SKU, status())
	}
	title, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#results .result:first-child .title")))
	price, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#results .result:first-child .price")))
	if title != target.Title || (target.Price != nil && price != fmt.Sprintf("%.2f", *target.Price)) {
		t.Fatalf("card shows %q / %q, want %q / %v", title, price, target.Title, target.Price)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`(() => { const i = document.querySelector("#results .result:first-child .thumb"); return i && i.complete && i.naturalWidth > 0; })()`,
		chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatalf("the product image did not load from /v1/products/{sku}/image: %v", err)
	}
	if shot := os.Getenv("LOOKALIKE_SCREENSHOT"); shot != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(80))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.WriteFile(shot, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	err = chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#results .result:first-child .more")))
	if err == nil {
		_, err = chromedp.Run(ctx, chromedp.Poll[bool](`(() => { const s = document.getElementById("status").textContent; return s.startsWith("More like ") && !s.endsWith("…"); })()`,
			chromedp.WithPollingTimeout(10*time.Second)))
	}
	if err != nil {
		t.Fatalf("more like this: %v (status %q)", err, status())
	}
	skus, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#results .result")).map(e => e.dataset.sku)`))
	if err != nil {
		t.Fatal(err)
	}
	if st := status(); !strings.Contains(st, target.Title) || len(skus) == 0 {
		t.Fatalf("after more like this: status %q, %d results", st, len(skus))
	}
	for _, s := range skus {
		if s == target.SKU {
			t.Fatalf("more like this listed the product itself: %v", skus)
		}
	}
}
