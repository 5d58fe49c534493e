package telemetry

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestSetupQuietAndMetrics(t *testing.T) {
	tests := []struct {
		name       string
		env        map[string]string
		wantExport bool
	}{
		{"no exporter configured", nil, false},
		{"exporter none", map[string]string{"OTEL_TRACES_EXPORTER": "none"}, false},
		{"console exporter", map[string]string{"OTEL_TRACES_EXPORTER": "console"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			tel, err := Setup(context.Background(), Options{Service: "svc", Version: "v1.2.3", Commit: "abc", Getenv: func(k string) string { return tc.env[k] }})
			if err != nil {
				t.Fatal(err)
			}
			defer tel.Shutdown(context.Background())
			if tel.Exporting != tc.wantExport {
				t.Fatalf("Exporting = %v, want %v", tel.Exporting, tc.wantExport)
			}
			c, _ := tel.Meter("test").Int64Counter("lookalike_test_items")
			c.Add(context.Background(), 3)
			rec := httptest.NewRecorder()
			tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
			body, _ := io.ReadAll(rec.Body)
			for _, want := range []string{`lookalike_build_info{commit="abc",service="svc",version="v1.2.3"} 1`, "lookalike_test_items_total", "go_goroutines"} {
				if !strings.Contains(string(body), want) {
					t.Errorf("metrics lack %q", want)
				}
			}
		})
	}
}
