package canary_test

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"testing"

	"github.com/lookalike-dev/lookalike/gateway/internal/canary"
	"github.com/lookalike-dev/lookalike/gateway/internal/gatewaytest"
	"github.com/lookalike-dev/lookalike/gateway/internal/httpapi"
)

func testPNG(t *testing.T, seed int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 40, 30))
	for y := range 30 {
		for x := range 40 {
			img.Set(x, y, color.RGBA{uint8(x*6 + seed*40), uint8(y*8 + seed*10), uint8(seed * 60), 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func multipartBody(t *testing.T, fields map[string]string, img []byte) ([]byte, string) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for k, v := range fields {
		_ = w.WriteField(k, v)
	}
	fw, _ := w.CreateFormFile("image", "i.png")
	_, _ = fw.Write(img)
	_ = w.Close()
	return b.Bytes(), w.FormDataContentType()
}

func readBody(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWiredIntoTheGateway runs the real service assembly over the fake
// downstreams: the admin routes sit behind the admin key, searches carry
// the arm and model headers, and refusals are 4xx with codes.
func TestWiredIntoTheGateway(t *testing.T) {
	env := gatewaytest.Start(t, gatewaytest.Options{})
	key := gatewaytest.AdminKey
	body, ct := multipartBody(t, map[string]string{"sku": "SKU-1", "metadata": `{"title":"one"}`}, testPNG(t, 1))
	if resp := env.Do(t, "POST", "/v1/products", ct, body, key); resp.StatusCode != http.StatusCreated {
		t.Fatalf("index: %d %s", resp.StatusCode, readBody(t, resp))
	}

	if resp := env.Do(t, "GET", canary.RouteCanary, "", nil, ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("report without a key: %d", resp.StatusCode)
	}
	resp := env.Do(t, "GET", canary.RouteCanary, "", nil, key)
	var rep canary.Report
	if err := json.Unmarshal(readBody(t, resp), &rep); err != nil || resp.StatusCode != http.StatusOK ||
		rep.Phase != canary.PhaseNone || rep.Stable != gatewaytest.ModelID || len(rep.Spaces) != 1 || rep.Spaces[0].Count != 1 {
		t.Fatalf("report: %d %+v %v", resp.StatusCode, rep, err)
	}

	sbody, sct := multipartBody(t, nil, testPNG(t, 1))
	resp = env.Do(t, "POST", "/v1/search", sct, sbody, "")
	b := readBody(t, resp)
	if resp.StatusCode != http.StatusOK || resp.Header.Get(canary.HeaderArm) != "stable" || resp.Header.Get(canary.HeaderModel) != gatewaytest.ModelID {
		t.Fatalf("search: %d %s headers %v", resp.StatusCode, b, resp.Header)
	}

	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"start the stable model", "POST", canary.RouteCanary, `{"model":"` + gatewaytest.ModelID + `"}`, 409, canary.CodeCanaryIsStable},
		{"start a model no embedder serves", "POST", canary.RouteCanary, `{"model":"resnet-v9"}`, 400, canary.CodeModelNotServed},
		{"start without a model or CANARY_MODEL", "POST", canary.RouteCanary, ``, 400, "invalid_argument"},
		{"serve without canary", "POST", canary.RouteServe, ``, 409, canary.CodeNoCanary},
		{"promote without canary", "POST", canary.RoutePromote, `{}`, 409, canary.CodeNoCanary},
		{"unknown field", "POST", canary.RouteRollback, `{"drop":true,"now":1}`, 400, canary.CodeInvalidJSON},
		{"rollback without canary is a no-op", "POST", canary.RouteRollback, `{"drop":true}`, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := env.Do(t, tc.method, tc.path, "application/json", []byte(tc.body), key)
			b := readBody(t, resp)
			var e struct{ Error struct{ Code string } }
			_ = json.Unmarshal(b, &e)
			if resp.StatusCode != tc.status || e.Error.Code != tc.code {
				t.Fatalf("%d %s, want %d %s", resp.StatusCode, b, tc.status, tc.code)
			}
		})
	}

	// Forcing an arm is for admins: the override header without a valid
	// admin key is refused with 403 before the split looks at it.
	if httpapi.HeaderModelOverride != canary.HeaderOverride {
		t.Fatalf("the API guards %q, the router reads %q", httpapi.HeaderModelOverride, canary.HeaderOverride)
	}
	overrides := []struct {
		name, override, auth string
		status               int
		code                 string
	}{
		{"override without a key", "canary", "", http.StatusForbidden, httpapi.CodeOverrideForbidden},
		{"override stable without a key", "stable", "", http.StatusForbidden, httpapi.CodeOverrideForbidden},
		{"override with a wrong key", "canary", "Bearer wrong-key-0123456789", http.StatusForbidden, httpapi.CodeOverrideForbidden},
		{"override with a basic scheme", "canary", "Basic " + key, http.StatusForbidden, httpapi.CodeOverrideForbidden},
		{"override canary with the key, no canary", "canary", "Bearer " + key, http.StatusConflict, canary.CodeNoCanary},
		{"override stable with the key", "stable", "bearer " + key, http.StatusOK, ""},
		{"blank override is no override", "  ", "", http.StatusOK, ""},
	}
	for _, tc := range overrides {
		t.Run(tc.name, func(t *testing.T) {
			sbody, sct := multipartBody(t, nil, testPNG(t, 2))
			req, _ := http.NewRequest("POST", env.URL+"/v1/search", bytes.NewReader(sbody))
			req.Header.Set("Content-Type", sct)
			req.Header.Set(canary.HeaderOverride, tc.override)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b := readBody(t, resp)
			var e struct{ Error struct{ Code string } }
			_ = json.Unmarshal(b, &e)
			if resp.StatusCode != tc.status || e.Error.Code != tc.code {
				t.Fatalf("%d %s, want %d %s", resp.StatusCode, b, tc.status, tc.code)
			}
			if tc.status == http.StatusOK && resp.Header.Get(canary.HeaderArm) != "stable" {
				t.Fatalf("arm %q", resp.Header.Get(canary.HeaderArm))
			}
		})
	}
}
