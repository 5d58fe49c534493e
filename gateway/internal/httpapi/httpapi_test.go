package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1/embedv1test"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lookalike-dev/lookalike/gateway/internal/gatewaytest"
	"github.com/lookalike-dev/lookalike/gateway/internal/service"
	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/gatewayv1"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
)

// pngOf draws a distinct test picture per seed.
func pngOf(t testing.TB, seed int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 48, 32))
	for y := range 32 {
		for x := range 48 {
			img.Set(x, y, color.RGBA{uint8((x*seed*7 + y*3) % 256), uint8((y*seed*11 + x) % 256), uint8((seed * 53) % 256), 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// form builds a multipart body; files are given as name -> bytes.
func form(t testing.TB, fields map[string]string, files map[string][]byte) ([]byte, string) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for k, v := range fields {
		w.WriteField(k, v)
	}
	for k, v := range files {
		fw, _ := w.CreateFormFile(k, k+".bin")
		fw.Write(v)
	}
	w.Close()
	return b.Bytes(), w.FormDataContentType()
}

func decode[T any](t testing.TB, resp *http.Response) T {
	t.Helper()
	defer resp.Body.Close()
	var v T
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decoding %d %s: %v", resp.StatusCode, b, err)
	}
	return v
}

func wantStatus(t testing.TB, resp *http.Response, status int, code string) {
	t.Helper()
	if resp.StatusCode != status {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("status %d (%s), want %d %s", resp.StatusCode, b, status, code)
	}
	if code != "" {
		env := decode[apierror.Envelope](t, resp)
		if env.Error == nil || env.Error.Code != code {
			t.Fatalf("envelope %+v, want code %s", env.Error, code)
		}
		if env.Error.RequestID == "" {
			t.Fatal("envelope has no request_id")
		}
	} else {
		resp.Body.Close()
	}
}

// index adds products seed 1..n as SKU-n with categories a/b alternating.
func index(t testing.TB, env *gatewaytest.Env, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		cat := "a"
		if i%2 == 0 {
			cat = "b"
		}
		md := fmt.Sprintf(`{"title":"Product %d","category":%q,"price":%d,"in_stock":true}`, i, cat, i*10)
		body, ct := form(t, map[string]string{"sku": fmt.Sprintf("SKU-%d", i), "metadata": md}, map[string][]byte{"image": pngOf(t, i)})
		wantStatus(t, env.Do(t, http.MethodPost, "/v1/products", ct, body, gatewaytest.AdminKey), http.StatusCreated, "")
	}
}

func TestSearchFlowsThroughContracts(t *testing.T) {
	env := gatewaytest.Start(t, gatewaytest.Options{})
	index(t, env, 6)
	if got := env.Search.Count("products__" + gatewaytest.ModelID); got != 6 {
		t.Fatalf("collection holds %d points, want 6", got)
	}
	if got := env.Search.Alias("products"); got != "products__"+gatewaytest.ModelID {
		t.Fatalf("alias products -> %q", got)
	}
	for i := 1; i <= 6; i++ {
		body, ct := form(t, map[string]string{"top_k": "3"}, map[string][]byte{"image": pngOf(t, i)})
		resp := env.Do(t, http.MethodPost, "/v1/search", ct, body, "")
		if resp.StatusCode != 200 {
			wantStatus(t, resp, 200, "")
		}
		st := resp.Header.Get("Server-Timing")
		for _, hop := range []string{"preprocess;dur=", "embed;dur=", "search;dur=", "total;dur="} {
			if !strings.Contains(st, hop) {
				t.Fatalf("Server-Timing %q lacks %s", st, hop)
			}
		}
		r := decode[gatewayv1.SearchResponse](t, resp)
		if r.Model != gatewaytest.ModelID || len(r.Results) != 3 {
			t.Fatalf("got model %q with %d results", r.Model, len(r.Results))
		}
		if want := fmt.Sprintf("SKU-%d", i); r.Results[0].SKU != want || r.Results[0].Score < 0.999 {
			t.Fatalf("first result %s (%.3f), want %s at ~1", r.Results[0].SKU, r.Results[0].Score, want)
		}
		if r.Results[0].Score < r.Results[1].Score || r.Results[1].Score < r.Results[2].Score {
			t.Fatalf("results not best first: %+v", r.Results)
		}
		if r.Results[0].Metadata["title"] != fmt.Sprintf("Product %d", i) {
			t.Fatalf("metadata %v", r.Results[0].Metadata)
		}
	}
	// The model's published spec, not a hard-coded one, went to preprocess,
	// asking for uint8 levels since the model takes them.
	want := gatewaytest.Model().WireSpec()
	if want.DType != "uint8" || want.Width != gatewaytest.Spec().Width {
		t.Fatalf("wire spec %+v", want)
	}
	for _, s := range env.Preprocess.Specs() {
		if s != want.Encode() {
			t.Fatalf("preprocess got spec %s, want the model's %s", s, want.Encode())
		}
	}
	if u, f := env.Embed.DTypes("uint8"), env.Embed.DTypes("float32"); u != 12 || f != 0 {
		t.Fatalf("embed got %d uint8 and %d float32 tensors, want 12 and 0", u, f)
	}
	// The gateway never reads the perceptual hash: preprocess skips it.
	for _, s := range env.Preprocess.Skips() {
		if s != preprocessv1.SkipPHash {
			t.Fatalf("preprocess got %s %q, want %q", preprocessv1.HeaderSkip, s, preprocessv1.SkipPHash)
		}
	}
}

// A preprocess from before uint8 tensors refuses them: the query still
// answers (float32 tensors), and later ones ask for float32 at once.
func TestOlderPreprocessGetsFloat32(t *testing.T) {
	env := gatewaytest.Start(t, gatewaytest.Options{})
	index(t, env, 3)
	env.Preprocess.SetFloatOnly(true)
	before := len(env.Preprocess.Specs())
	for i := 1; i <= 3; i++ {
		body, ct := form(t, map[string]string{"top_k": "1"}, map[string][]byte{"image": pngOf(t, i)})
		resp := env.Do(t, http.MethodPost, "/v1/search", ct, body, "")
		r := decode[gatewayv1.SearchResponse](t, resp)
		if resp.StatusCode != 200 || len(r.Results) != 1 || r.Results[0].SKU != fmt.Sprintf("SKU-%d", i) {
			t.Fatalf("query %d: status %d, %+v", i, resp.StatusCode, r.Results)
		}
	}
	var dtypes []string
	for _, s := range env.Preprocess.Specs()[before:] {
		spec, err := preprocessv1.DecodeSpec(s)
		if err != nil {
			t.Fatal(err)
		}
		dtypes = append(dtypes, spec.DType)
	}
	if want := []string{"uint8", "float32", "float32", "float32"}; !slices.Equal(dtypes, want) {
		t.Fatalf("preprocess was asked for %v, want %v", dtypes, want)
	}
}

func TestSearchForms(t *testing.T) {
	env := gatewaytest.Start(t, gatewaytest.Options{})
	index(t, env, 6)
	img := pngOf(t, 3)
	imgSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(img) }))
	defer imgSrv.Close()
	mp, mpCT := form(t, map[string]string{"category": "a"}, map[string][]byte{"image": img})
	cases := []struct {
		name, path, ct string
		body           []byte
		first          string
		check          func(t *testing.T, r gatewayv1.SearchResponse)
	}{
		{"multipart with form filter", "/v1/search", mpCT, mp, "SKU-3", func(t *testing.T, r gatewayv1.SearchResponse) {
			for _, h := range r.Results {
				if h.Metadata["category"] != "a" {
					t.Fatalf("filter ignored: %v", h)
				}
			}
		}},
		{"raw image body", "/v1/search?top_k=2", "image/png", img, "SKU-3", func(t *testing.T, r gatewayv1.SearchResponse) {
			if len(r.Results) != 2 {
				t.Fatalf("top_k ignored: %d", len(r.Results))
			}
		}},
		{"image url", "/v1/search", "application/json", []byte(`{"image_url":"` + imgSrv.URL + `/x.png"}`), "SKU-3", nil},
		{"more like this", "/v1/search", "application/json", []byte(`{"sku":"SKU-3","top_k":5}`), "", func(t *testing.T, r gatewayv1.SearchResponse) {
			if len(r.Results) != 5 {
				t.Fatalf("%d results", len(r.Results))
			}
			for _, h := range r.Results {
				if h.SKU == "SKU-3" {
					t.Fatal("more like this returned the product itself")
				}
			}
		}},
		{"json filters", "/v1/search", "application/json", []byte(`{"sku":"SKU-3","filters":{"category":["b"],"price_max":40}}`), "", func(t *testing.T, r gatewayv1.SearchResponse) {
			if len(r.Results) != 2 { // SKU-2 (20) and SKU-4 (40)
				t.Fatalf("filters gave %d results: %+v", len(r.Results), r.Results)
			}
		}},
		{"min score", "/v1/search?min_score=0.9999", "image/png", img, "SKU-3", func(t *testing.T, r gatewayv1.SearchResponse) {
			if len(r.Results) != 1 {
				t.Fatalf("min_score gave %d results", len(r.Results))
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := env.Do(t, http.MethodPost, c.path, c.ct, c.body, "")
			if resp.StatusCode != 200 {
				wantStatus(t, resp, 200, "")
			}
			r := decode[gatewayv1.SearchResponse](t, resp)
			if c.first != "" && (len(r.Results) == 0 || r.Results[0].SKU != c.first) {
				t.Fatalf("results %+v, want %s first", r.Results, c.first)
			}
			if c.check != nil {
				c.check(t, r)
			}
		})
	}
}

// sharedDir is the read-only data folder beside the repository.
func sharedDir(t testing.TB) string {
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

func TestBadRequests(t *testing.T) {
	env := gatewaytest.Start(t, gatewaytest.Options{Config: func(c *service.Config) { c.Limits.MaxUpload = 1 << 20 }})
	index(t, env, 2)
	truncated, err := os.ReadFile(filepath.Join(sharedDir(t), "catalog", "bad", "truncated.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	img := pngOf(t, 1)
	notImage := []byte("<!doctype html><html>hello</html>")
	k := gatewaytest.AdminKey
	mp := func(fields map[string]string, files map[string][]byte) ([]byte, string) {
		return form(t, fields, files)
	}
	type req struct {
		method, path, ct string
		body             []byte
	}
	multipartReq := func(method, path string, fields map[string]string, files map[string][]byte) req {
		b, ct := mp(fields, files)
		return req{method, path, ct, b}
	}
	manyParts := map[string]string{}
	for i := range 70 {
		manyParts[fmt.Sprintf("f%d", i)] = "x"
	}
	cases := []struct {
		name   string
		r      req
		key    string
		status int
		code   string
	}{
		{"search multipart too many parts", multipartReq("POST", "/v1/search", manyParts, map[string][]byte{"image": img}), "", 400, "bad_multipart"},
		{"search multipart text fields too large", multipartReq("POST", "/v1/search", map[string]string{"a": strings.Repeat("x", 600<<10), "b": strings.Repeat("y", 600<<10)}, nil), "", 413, "payload_too_large"},
		{"search multipart image too large", multipartReq("POST", "/v1/search", nil, map[string][]byte{"image": make([]byte, 2<<20)}), "", 413, "payload_too_large"},
		{"search without anything", req{"POST", "/v1/search", "", nil}, "", 400, "missing_image"},
		{"search multipart without image", multipartReq("POST", "/v1/search", map[string]string{"top_k": "3"}, nil), "", 400, "missing_image"},
		{"search empty image part", multipartReq("POST", "/v1/search", nil, map[string][]byte{"image": {}}), "", 400, "missing_image"},
		{"search not an image", multipartReq("POST", "/v1/search", nil, map[string][]byte{"image": notImage}), "", 415, "unsupported_format"},
		{"search truncated jpeg", multipartReq("POST", "/v1/search", nil, map[string][]byte{"image": truncated}), "", 422, "corrupt_image"},
		{"search top_k 0", req{"POST", "/v1/search?top_k=0", "image/png", img}, "", 400, "invalid_argument"},
		{"search top_k 1001", req{"POST", "/v1/search?top_k=1001", "image/png", img}, "", 400, "invalid_argument"},
		{"search top_k text", req{"POST", "/v1/search?top_k=ten", "image/png", img}, "", 400, "invalid_argument"},
		{"search min_score 2", req{"POST", "/v1/search?min_score=2", "image/png", img}, "", 400, "invalid_argument"},
		{"search price range reversed", req{"POST", "/v1/search?price_min=5&price_max=1", "image/png", img}, "", 400, "invalid_argument"},
		{"search in_stock maybe", req{"POST", "/v1/search?in_stock=maybe", "image/png", img}, "", 400, "invalid_argument"},
		{"search bad json", req{"POST", "/v1/search", "application/json", []byte(`{"sku":`)}, "", 400, "invalid_json"},
		{"search unknown json field", req{"POST", "/v1/search", "application/json", []byte(`{"skux":"a"}`)}, "", 400, "invalid_json"},
		{"search two inputs", multipartReq("POST", "/v1/search", map[string]string{"sku": "SKU-1"}, map[string][]byte{"image": img}), "", 400, "ambiguous_query"},
		{"search file url", req{"POST", "/v1/search", "application/json", []byte(`{"image_url":"file:///etc/passwd"}`)}, "", 400, "url_not_allowed"},
		{"search userinfo url", req{"POST", "/v1/search", "application/json", []byte(`{"image_url":"http://shop.example@127.0.0.1:1/"}`)}, "", 400, "url_not_allowed"},
		{"search unknown model", req{"POST", "/v1/search?model=nope-v9", "image/png", img}, "", 400, "unknown_model"},
		{"search bad model name", req{"POST", "/v1/search?model=../x", "image/png", img}, "", 400, "invalid_argument"},
		{"search unknown sku", req{"POST", "/v1/search", "application/json", []byte(`{"sku":"NOPE"}`)}, "", 404, "not_found"},
		{"search text body", req{"POST", "/v1/search", "text/plain", []byte("hello")}, "", 415, "unsupported_media_type"},
		{"search too large", req{"POST", "/v1/search", "image/png", make([]byte, 2<<20)}, "", 413, "payload_too_large"},
		{"create missing sku", multipartReq("POST", "/v1/products", map[string]string{"metadata": "{}"}, map[string][]byte{"image": img}), k, 400, "missing_sku"},
		{"create missing image", multipartReq("POST", "/v1/products", map[string]string{"sku": "X-1"}, nil), k, 400, "missing_image"},
		{"create image as text", multipartReq("POST", "/v1/products", map[string]string{"sku": "X-1", "image": "abc"}, nil), k, 400, "missing_image"},
		{"create not an image", multipartReq("POST", "/v1/products", map[string]string{"sku": "X-1"}, map[string][]byte{"image": notImage}), k, 415, "unsupported_format"},
		{"create truncated jpeg", multipartReq("POST", "/v1/products", map[string]string{"sku": "X-1"}, map[string][]byte{"image": truncated}), k, 422, "corrupt_image"},
		{"create bad metadata json", multipartReq("POST", "/v1/products", map[string]string{"sku": "X-1", "metadata": "{title:"}, map[string][]byte{"image": img}), k, 400, "invalid_metadata"},
		{"create metadata array", multipartReq("POST", "/v1/products", map[string]string{"sku": "X-1", "metadata": "[1,2]"}, map[string][]byte{"image": img}), k, 400, "invalid_metadata"},
		{"create metadata trailing", multipartReq("POST", "/v1/products", map[string]string{"sku": "X-1", "metadata": "{} {}"}, map[string][]byte{"image": img}), k, 400, "invalid_metadata"},
		{"create price as text", multipartReq("POST", "/v1/products", map[string]string{"sku": "X-1", "metadata": `{"price":"cheap"}`}, map[string][]byte{"image": img}), k, 400, "invalid_metadata"},
		{"create sku with control char", multipartReq("POST", "/v1/products", map[string]string{"sku": "X\x01"}, map[string][]byte{"image": img}), k, 400, "invalid_sku"},
		{"create long sku", multipartReq("POST", "/v1/products", map[string]string{"sku": strings.Repeat("x", 300)}, map[string][]byte{"image": img}), k, 400, "invalid_sku"},
		{"create json body", req{"POST", "/v1/products", "application/json", []byte(`{"sku":"X-1"}`)}, k, 415, "unsupported_media_type"},
		{"create broken multipart", req{"POST", "/v1/products", "multipart/form-data; boundary=zzz", []byte("--zzz\r\nbroken")}, k, 400, "bad_multipart"},
		{"update sku mismatch", multipartReq("PUT", "/v1/products/SKU-1", map[string]string{"sku": "SKU-2", "metadata": "{}"}, nil), k, 400, "invalid_sku"},
		{"update nothing", multipartReq("PUT", "/v1/products/SKU-1", map[string]string{"x": "y"}, nil), k, 400, "missing_image"},
		{"update metadata not object", req{"PUT", "/v1/products/SKU-1", "application/json", []byte(`{"metadata":3}`)}, k, 400, "invalid_metadata"},
		{"update unknown product", req{"PUT", "/v1/products/NOPE", "application/json", []byte(`{"metadata":{}}`)}, k, 404, "not_found"},
		{"get unknown product", req{"GET", "/v1/products/NOPE", "", nil}, k, 404, "not_found"},
		{"image of unknown product", req{"GET", "/v1/products/NOPE/image", "", nil}, "", 404, "not_found"},
		{"unknown route", req{"GET", "/v1/nothing", "", nil}, "", 404, "not_found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := env.Do(t, c.r.method, c.r.path, c.r.ct, c.r.body, c.key)
			if resp.StatusCode >= 500 {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("bad request got %d: %s", resp.StatusCode, b)
			}
			wantStatus(t, resp, c.status, c.code)
		})
	}
}

func TestAdminCRUD(t *testing.T) {
	env := gatewaytest.Start(t, gatewaytest.Options{})
	index(t, env, 3)
	k := gatewaytest.AdminKey
	type product struct {
		SKU      string         `json:"sku"`
		Metadata map[string]any `json:"metadata"`
		Dim      int            `json:"dim"`
	}
	p := decode[product](t, env.Do(t, "GET", "/v1/products/SKU-2", "", nil, k))
	if p.SKU != "SKU-2" || p.Metadata["title"] != "Product 2" || p.Dim != gatewaytest.Model().Dim {
		t.Fatalf("get: %+v", p)
	}
	// Metadata-only update keeps the vector.
	wantStatus(t, env.Do(t, "PUT", "/v1/products/SKU-2", "application/json", []byte(`{"metadata":{"title":"Renamed","price":5}}`), k), 200, "")
	p = decode[product](t, env.Do(t, "GET", "/v1/products/SKU-2", "", nil, k))
	if p.Metadata["title"] != "Renamed" || p.Metadata["sku"] != "SKU-2" {
		t.Fatalf("after update: %+v", p)
	}
	r := decode[gatewayv1.SearchResponse](t, env.Do(t, "POST", "/v1/search", "image/png", pngOf(t, 2), ""))
	if r.Results[0].SKU != "SKU-2" || r.Results[0].Metadata["title"] != "Renamed" {
		t.Fatalf("search after metadata update: %+v", r.Results[0])
	}
	// A new image moves the product in vector space.
	body, ct := form(t, map[string]string{"metadata": `{"title":"Now looks like 9"}`}, map[string][]byte{"image": pngOf(t, 9)})
	wantStatus(t, env.Do(t, "PUT", "/v1/products/SKU-2", ct, body, k), 200, "")
	r = decode[gatewayv1.SearchResponse](t, env.Do(t, "POST", "/v1/search", "image/png", pngOf(t, 9), ""))
	if r.Results[0].SKU != "SKU-2" || r.Results[0].Score < 0.999 {
		t.Fatalf("search after image update: %+v", r.Results[0])
	}
	// An image alone keeps the metadata.
	body, ct = form(t, nil, map[string][]byte{"image": pngOf(t, 11)})
	wantStatus(t, env.Do(t, "PUT", "/v1/products/SKU-2", ct, body, k), 200, "")
	p = decode[product](t, env.Do(t, "GET", "/v1/products/SKU-2", "", nil, k))
	if p.Metadata["title"] != "Now looks like 9" {
		t.Fatalf("image-only update lost the metadata: %+v", p)
	}
	r = decode[gatewayv1.SearchResponse](t, env.Do(t, "POST", "/v1/search", "image/png", pngOf(t, 11), ""))
	if r.Results[0].SKU != "SKU-2" || r.Results[0].Score < 0.999 {
		t.Fatalf("search after image-only update: %+v", r.Results[0])
	}
	wantStatus(t, env.Do(t, "DELETE", "/v1/products/SKU-2", "", nil, k), 204, "")
	wantStatus(t, env.Do(t, "GET", "/v1/products/SKU-2", "", nil, k), 404, "not_found")
	wantStatus(t, env.Do(t, "DELETE", "/v1/products/SKU-2", "", nil, k), 204, "")
}

func TestAdminAuth(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "keys")
	const fileKey1, fileKey2 = "file-key-number-one-0123456789", "file-key-number-two-0123456789"
	os.WriteFile(keyFile, []byte(fileKey1+"\n"), 0o600)
	// The wrong keys below are many; the per-IP budget of failures has its
	// own test (TestFailedAdminKeysLimitedPerClient).
	env := gatewaytest.Start(t, gatewaytest.Options{Config: func(c *service.Config) { c.AdminKeyFile = keyFile; c.AdminAuthFailureBurst = 1000 }})
	img := pngOf(t, 1)
	routes := []struct{ method, path string }{
		{"POST", "/v1/products"}, {"PUT", "/v1/products/SKU-1"}, {"DELETE", "/v1/products/SKU-1"}, {"GET", "/v1/products/SKU-1"},
	}
	keys := []struct {
		name, header string
		ok           bool
	}{
		{"missing", "", false},
		{"wrong", "Bearer wrong-key-0123456789abcdef", false},
		{"env key prefix", "Bearer " + gatewaytest.AdminKey[:10], false},
		{"basic scheme", "Basic " + gatewaytest.AdminKey, false},
		{"env key", "Bearer " + gatewaytest.AdminKey, true},
		{"file key", "Bearer " + fileKey1, true},
	}
	for _, rt := range routes {
		for _, k := range keys {
			t.Run(rt.method+" "+rt.path+" "+k.name, func(t *testing.T) {
				body, ct := form(t, map[string]string{"sku": "SKU-1", "metadata": "{}"}, map[string][]byte{"image": img})
				req, _ := http.NewRequest(rt.method, env.URL+rt.path, bytes.NewReader(body))
				req.Header.Set("Content-Type", ct)
				if k.header != "" {
					req.Header.Set("Authorization", k.header)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				if !k.ok {
					wantStatus(t, resp, 401, "unauthorized")
					return
				}
				if resp.StatusCode == 401 || resp.StatusCode >= 500 {
					wantStatus(t, resp, 200, "")
				}
				for name, vs := range resp.Header {
					for _, v := range vs {
						if strings.Contains(v, gatewaytest.AdminKey) || strings.Contains(v, fileKey1) {
							t.Fatalf("response header %s echoes the key", name)
						}
					}
				}
				resp.Body.Close()
			})
		}
	}
	// Rotation: the file now holds only a new key.
	os.WriteFile(keyFile, []byte(fileKey2+"\n"), 0o600)
	later := time.Now().Add(time.Minute)
	os.Chtimes(keyFile, later, later)
	deadline := time.Now().Add(5 * time.Second)
	for {
		old := env.Do(t, "GET", "/v1/products/SKU-1", "", nil, fileKey1)
		old.Body.Close()
		if old.StatusCode == 401 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("old file key still accepted after rotation")
		}
		time.Sleep(200 * time.Millisecond)
	}
	resp := env.Do(t, "GET", "/v1/products/SKU-1", "", nil, fileKey2)
	resp.Body.Close()
	if resp.StatusCode == 401 {
		t.Fatal("new file key refused after rotation")
	}

	logs := env.Logs.String()
	if !strings.Contains(logs, `"status":401`) {
		t.Fatalf("the access log did not capture the refusals:\n%s", logs)
	}
	for _, key := range []string{gatewaytest.AdminKey, gatewaytest.AdminKey[:10], fileKey1, fileKey2, "wrong-key-0123456789abcdef"} {
		if strings.Contains(logs, key) {
			t.Fatalf("logs contain a key (%q...)", key[:6])
		}
	}
}

func TestDeadDownstreamFast503(t *testing.T) {
	env := gatewaytest.Start(t, gatewaytest.Options{})
	index(t, env, 2) // caches the model list
	env.EmbedSrv.Close()
	for range 3 {
		start := time.Now()
		resp := env.Do(t, "POST", "/v1/search", "image/png", pngOf(t, 1), "")
		if resp.Header.Get("Retry-After") == "" {
			t.Fatal("503 without Retry-After")
		}
		wantStatus(t, resp, 503, "unavailable")
		if el := time.Since(start); el > time.Second {
			t.Fatalf("dead embed took %s", el)
		}
	}
	// Search still answers "more like this", which needs no embedding.
	resp := env.Do(t, "POST", "/v1/search", "application/json", []byte(`{"sku":"SKU-1"}`), "")
	wantStatus(t, resp, 200, "")
}

// stalled accepts connections and never answers.
func stalled(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + l.Addr().String()
}

func TestStalledDownstreamOpensBreaker(t *testing.T) {
	url := stalled(t)
	env := gatewaytest.Start(t, gatewaytest.Options{NoProbe: true, Config: func(c *service.Config) {
		c.Search = service.Hop{URLs: []string{url}, Timeout: 400 * time.Millisecond}
		c.Retries = -1
		c.BreakerMinCalls = 2
		c.BreakerOpen = time.Minute
	}})
	for i := range 2 {
		start := time.Now()
		resp := env.Do(t, "POST", "/v1/search", "application/json", []byte(`{"sku":"SKU-1"}`), "")
		wantStatus(t, resp, 504, "deadline_exceeded")
		if el := time.Since(start); el < 350*time.Millisecond || el > 2*time.Second {
			t.Fatalf("request %d took %s with a 400ms hop timeout", i, el)
		}
	}
	start := time.Now()
	resp := env.Do(t, "POST", "/v1/search", "application/json", []byte(`{"sku":"SKU-1"}`), "")
	wantStatus(t, resp, 503, "unavailable")
	if el := time.Since(start); el > 250*time.Millisecond {
		t.Fatalf("open breaker answered in %s", el)
	}
}

func TestLoadSheddingUnderConcurrency(t *testing.T) {
	url := stalled(t)
	env := gatewaytest.Start(t, gatewaytest.Options{NoProbe: true, Config: func(c *service.Config) {
		c.Search = service.Hop{URLs: []string{url}, Timeout: 2 * time.Second}
		c.Retries = -1
		c.BreakerMinCalls = 100
		c.Limits.MaxInFlight = 3
	}})
	const n = 10
	var wg sync.WaitGroup
	statuses := make(chan *http.Response, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses <- env.Do(t, "POST", "/v1/search", "application/json", []byte(`{"sku":"SKU-1"}`), "")
		}()
	}
	wg.Wait()
	close(statuses)
	shed, timedOut := 0, 0
	for resp := range statuses {
		switch resp.StatusCode {
		case 429:
			if resp.Header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
			wantStatus(t, resp, 429, "overloaded")
			shed++
		case 504:
			resp.Body.Close()
			timedOut++
		default:
			wantStatus(t, resp, 429, "overloaded")
		}
	}
	if timedOut != 3 || shed != n-3 {
		t.Fatalf("%d reached the stalled search and %d were shed; want 3 and %d", timedOut, shed, n-3)
	}
}

func TestBalancingSkipsNotReadyEmbed(t *testing.T) {
	spare := embedv1test.New(gatewaytest.Model())
	spare.SetReady(false)
	spareSrv := httptest.NewServer(spare.Handler())
	defer spareSrv.Close()
	env := gatewaytest.Start(t, gatewaytest.Options{ExtraEmbedURLs: []string{spareSrv.URL}})
	index(t, env, 4)
	for i := 1; i <= 4; i++ {
		wantStatus(t, env.Do(t, "POST", "/v1/search", "image/png", pngOf(t, i), ""), 200, "")
	}
	if spare.Calls() != 0 || env.Embed.Calls() != 8 {
		t.Fatalf("not-ready embed got %d calls, ready one %d", spare.Calls(), env.Embed.Calls())
	}
	// The instance states and the per-route RED metrics are exported, on
	// the internal listener only.
	wantStatus(t, env.Do(t, "GET", "/metrics", "", nil, ""), 404, "not_found")
	rec := httptest.NewRecorder()
	env.Server.Internal.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	metrics := rec.Body.String()
	for _, want := range []string{
		`lookalike_gateway_upstream_ready{downstream="embed",instance="` + spareSrv.URL + `"`,
		`lookalike_gateway_upstream_breaker_open{downstream="search"`,
	} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("/metrics lacks %s", want)
		}
	}
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, `lookalike_gateway_upstream_ready{downstream="embed",instance="`+spareSrv.URL+`"`) && !strings.HasSuffix(line, " 0") {
			t.Fatalf("not-ready instance exported as %q", line)
		}
	}
	if !strings.Contains(metrics, `route="/v1/search"`) {
		t.Fatal("/metrics has no per-route series for /v1/search")
	}
}

func TestProductImage(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "images"), 0o755)
	img := pngOf(t, 4)
	os.WriteFile(filepath.Join(dir, "images", "p4.png"), img, 0o644)
	os.WriteFile(filepath.Join(filepath.Dir(dir), "outside.png"), img, 0o644)
	remote := pngOf(t, 5)
	imgSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(remote) }))
	defer imgSrv.Close()
	env := gatewaytest.Start(t, gatewaytest.Options{CatalogDir: dir})
	k := gatewaytest.AdminKey
	products := map[string]string{
		"P-LOCAL":  `{"image":"images/p4.png"}`,
		"P-URL":    `{"image_url":"` + imgSrv.URL + `/p5.png"}`,
		"P-ESCAPE": `{"image":"../outside.png"}`,
		"P-NONE":   `{}`,
	}
	for sku, md := range products {
		body, ct := form(t, map[string]string{"sku": sku, "metadata": md}, map[string][]byte{"image": img})
		wantStatus(t, env.Do(t, "POST", "/v1/products", ct, body, k), 201, "")
	}
	cases := []struct {
		sku    string
		status int
		body   []byte
	}{
		{"P-LOCAL", 200, img},
		{"P-URL", 200, remote},
		{"P-ESCAPE", 404, nil},
		{"P-NONE", 404, nil},
	}
	for _, c := range cases {
		t.Run(c.sku, func(t *testing.T) {
			resp := env.Do(t, "GET", "/v1/products/"+c.sku+"/image", "", nil, "")
			if c.status != 200 {
				wantStatus(t, resp, c.status, "not_found")
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" || !bytes.Equal(b, c.body) {
				t.Fatalf("got %d %s %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(b))
			}
		})
	}
}

// TestStalledDownstreamProbedOut: with probing on, a stalled instance fails
// its readiness probe, so requests never wait on it: a fast 503.
func TestStalledDownstreamProbedOut(t *testing.T) {
	url := stalled(t)
	env := gatewaytest.Start(t, gatewaytest.Options{Config: func(c *service.Config) {
		c.Search = service.Hop{URLs: []string{url}, Timeout: 5 * time.Second}
	}})
	start := time.Now()
	resp := env.Do(t, "POST", "/v1/search", "application/json", []byte(`{"sku":"SKU-1"}`), "")
	wantStatus(t, resp, 503, "unavailable")
	if el := time.Since(start); el > time.Second {
		t.Fatalf("probed-out instance answered in %s (hop timeout 5s)", el)
	}
}

// TestImageURLSSRFRefusedByGateway: with the production fetch settings
// (private addresses refused), image_url cannot reach internal hosts.
func TestImageURLSSRFRefusedByGateway(t *testing.T) {
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("internal server reached: %s", r.URL)
	}))
	defer internal.Close()
	port := internal.URL[strings.LastIndex(internal.URL, ":")+1:]
	env := gatewaytest.Start(t, gatewaytest.Options{NoProbe: true, Config: func(c *service.Config) { c.Fetch.AllowPrivate = false }})
	urls := []string{
		internal.URL + "/x.png",
		"http://localhost:" + port + "/x.png",
		"http://2130706433:" + port + "/",
		"http://[::1]:" + port + "/",
		"http://[::ffff:127.0.0.1]:" + port + "/",
		"http://169.254.169.254/latest/meta-data/",
		"http://10.0.0.1/",
		"gopher://127.0.0.1:" + port + "/",
		"http://images.example@127.0.0.1:" + port + "/",
	}
	for _, u := range urls {
		body, _ := json.Marshal(map[string]string{"image_url": u})
		resp := env.Do(t, "POST", "/v1/search", "application/json", body, "")
		wantStatus(t, resp, 400, "url_not_allowed")
	}
}
