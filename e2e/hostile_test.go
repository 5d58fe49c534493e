package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"image/color"
	"net/http"
	"path/filepath"
	"slices"
	"testing"

	"github.com/lookalike-dev/lookalike/e2e/internal/hostile"
	"github.com/lookalike-dev/lookalike/e2e/internal/stack"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
)

// TestHostileInputs sends the generated hostile corpus through the gateway
// and straight to preprocess: each case gets its code or a correct result,
// never a 5xx, and the bombs do not inflate preprocess's memory.
func TestHostileInputs(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs in the full suite")
	}
	s := stack.New(t, stack.Options{})
	s.Start(t)
	c := stack.NewClient(s.Gateway(), s.AdminKey)
	products, _, _ := loadCatalog(t, s, 3)
	if err := c.IndexAll(filepath.Dir(s.Env.CatalogJL), products, 3); err != nil {
		t.Fatal(err)
	}
	cases, err := hostile.Corpus("testdata/seeds", filepath.Join(filepath.Dir(s.Env.CatalogJL), "bad"))
	if err != nil {
		t.Fatal(err)
	}
	pre, preMetrics := s.Procs["preprocess"].URL(), s.Procs["preprocess"].MetricsURL()
	rssBefore, err := c.Metric(preMetrics, "process_resident_memory_bytes")
	if err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, tc hostile.Case, st int, b []byte) {
		t.Helper()
		if st >= 500 {
			t.Fatalf("%d (5xx) for hostile input: %s", st, b)
		}
		if len(tc.Codes) == 0 {
			if st != http.StatusOK {
				t.Fatalf("want success, got %d %s", st, b)
			}
			return
		}
		var env stack.ErrorBody
		if st < 400 || json.Unmarshal(b, &env) != nil || !slices.Contains(tc.Codes, env.Error.Code) {
			t.Fatalf("got %d %s, want 4xx with one of %v", st, b, tc.Codes)
		}
	}
	tried := 0
	for _, tc := range cases {
		t.Run("preprocess/"+tc.Name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, pre+preprocessv1.RoutePreprocess, bytes.NewReader(tc.Data))
			req.Header.Set("Accept", "application/json")
			resp, err := c.HTTP.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var buf bytes.Buffer
			_, _ = buf.ReadFrom(resp.Body)
			tried++
			check(t, tc, resp.StatusCode, buf.Bytes())
			if tc.Orientation > 0 {
				checkOrientation(t, tc.Orientation, buf.Bytes())
			}
		})
		t.Run("gateway/"+tc.Name, func(t *testing.T) {
			body, ct := stack.Multipart(nil, map[string][]byte{"image": tc.Data})
			st, b, _, err := c.Do(http.MethodPost, "/v1/search?top_k=3", ct, body, false)
			if err != nil {
				t.Fatal(err)
			}
			tried++
			check(t, tc, st, b)
		})
	}
	t.Run("gateway/huge multipart body", func(t *testing.T) {
		huge := make([]byte, 80<<20)
		_, _ = rand.Read(huge)
		body, ct := stack.Multipart(nil, map[string][]byte{"image": huge})
		st, b, _, err := c.Do(http.MethodPost, "/v1/search", ct, body, false)
		tried++
		if err != nil {
			// The server may close the connection once the limit is hit.
			t.Logf("connection closed on an 80 MiB body: %v", err)
			return
		}
		var env stack.ErrorBody
		if st != http.StatusRequestEntityTooLarge || json.Unmarshal(b, &env) != nil || env.Error.Code == "" {
			t.Fatalf("got %d %.200s, want 413 with a code", st, b)
		}
	})
	t.Run("gateway/wrong content type", func(t *testing.T) {
		st, b, _, err := c.Do(http.MethodPost, "/v1/search", "text/plain", bytes.NewReader([]byte("image please")), false)
		tried++
		if err != nil {
			t.Fatal(err)
		}
		var env stack.ErrorBody
		if st < 400 || st > 499 || json.Unmarshal(b, &env) != nil || env.Error.Code == "" {
			t.Fatalf("got %d %s, want 4xx with a code", st, b)
		}
	})
	rssAfter, err := c.Metric(preMetrics, "process_resident_memory_bytes")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("hostile corpus: %d cases tried; preprocess RSS %.0f MiB -> %.0f MiB", tried, rssBefore/(1<<20), rssAfter/(1<<20))
	if rssAfter-rssBefore > 400<<20 {
		t.Fatalf("preprocess RSS grew by %.0f MiB on the corpus: a bomb was allocated", (rssAfter-rssBefore)/(1<<20))
	}
}

// checkOrientation reads the four quadrant centres of the debug tensor and
// compares their colours with the displayed orientation.
func checkOrientation(t *testing.T, o int, body []byte) {
	t.Helper()
	var r preprocessv1.DebugResponse
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("debug response: %v", err)
	}
	if r.Facts.Orientation != o {
		t.Errorf("facts.orientation = %d, want %d", r.Facts.Orientation, o)
	}
	if len(r.Shape) != 4 || r.Shape[1] != 3 || r.Spec.Layout != "NCHW" {
		t.Fatalf("unexpected debug tensor %v %s", r.Shape, r.Spec.Layout)
	}
	h, w := r.Shape[2], r.Shape[3]
	at := func(x, y int) color.RGBA {
		var px [3]uint8
		for ch := range 3 {
			v := r.Data[ch*h*w+y*w+x]*r.Spec.Std[ch] + r.Spec.Mean[ch]
			if v > 0.5 {
				px[ch] = 255
			}
		}
		return color.RGBA{px[0], px[1], px[2], 255}
	}
	got := [4]color.RGBA{at(w/4, h/4), at(3*w/4, h/4), at(w/4, 3*h/4), at(3*w/4, 3*h/4)}
	if got != hostile.Displayed[o] {
		t.Errorf("orientation %d: quadrants %v, want %v", o, fmt.Sprint(got), fmt.Sprint(hostile.Displayed[o]))
	}
}
