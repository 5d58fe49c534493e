package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/lookalike-dev/lookalike/gateway/internal/gatewaytest"
	"github.com/lookalike-dev/lookalike/gateway/internal/httpapi"
)

var paramPattern = regexp.MustCompile(`:([a-z_]+)`)

// TestOpenAPIMatchesRoutes keeps openapi.json and the registered echo
// routes (the gateway's and shared/server's) in step, both ways.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	env := gatewaytest.Start(t, gatewaytest.Options{NoProbe: true})
	routes := map[string]bool{}
	for _, r := range env.Server.Echo.Routes() {
		if r.Method == "echo_route_not_found" || strings.HasPrefix(r.Method, "echo_") {
			continue
		}
		p := paramPattern.ReplaceAllString(r.Path, "{$1}")
		p = strings.Replace(p, "/*", "/{file}", 1)
		routes[r.Method+" "+p] = true
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(httpapi.OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths {
		for method := range item {
			if method == "parameters" || method == "summary" || method == "description" {
				continue
			}
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	var missing, stale []string
	for r := range routes {
		if !documented[r] {
			missing = append(missing, r)
		}
	}
	for d := range documented {
		if !routes[d] {
			stale = append(stale, d)
		}
	}
	sort.Strings(missing)
	sort.Strings(stale)
	if len(missing) > 0 || len(stale) > 0 {
		t.Fatalf("openapi.json out of step with the routes:\n  undocumented routes: %v\n  documented but not registered: %v", missing, stale)
	}
	if len(routes) < 10 {
		t.Fatalf("only %d routes registered", len(routes))
	}
	// And it is served.
	resp := env.Do(t, "GET", "/openapi.json", "", nil, "")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != string(httpapi.OpenAPI) {
		t.Fatalf("GET /openapi.json: %d", resp.StatusCode)
	}
}

func TestWebPageServed(t *testing.T) {
	env := gatewaytest.Start(t, gatewaytest.Options{NoProbe: true})
	cases := []struct{ path, ctype, contains string }{
		{"/", "text/html", `id="results"`},
		{"/static/app.js", "javascript", "/v1/search"},
		{"/static/style.css", "text/css", "#results"},
	}
	for _, c := range cases {
		resp := env.Do(t, "GET", c.path, "", nil, "")
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), c.ctype) || !strings.Contains(string(b), c.contains) {
			t.Fatalf("GET %s: %d %s", c.path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if resp.Header.Get("Content-Security-Policy") == "" {
			t.Fatalf("GET %s: no CSP", c.path)
		}
	}
	resp := env.Do(t, "GET", "/static/../go.mod", "", nil, "")
	resp.Body.Close()
	if resp.StatusCode == 200 {
		t.Fatal("static route served a path outside the page")
	}
}
