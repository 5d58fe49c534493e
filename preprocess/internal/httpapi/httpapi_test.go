package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/buildinfo"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"
	"github.com/lookalike-dev/lookalike/shared/server"
	"github.com/lookalike-dev/lookalike/shared/telemetry"

	"github.com/lookalike-dev/lookalike/preprocess/internal/httpapi"
	"github.com/lookalike-dev/lookalike/preprocess/internal/imagecorpus"
	"github.com/lookalike-dev/lookalike/preprocess/internal/imagedecode"
	"github.com/lookalike-dev/lookalike/preprocess/internal/preprocessor"
)

const (
	maxBytes = 256 << 10
	maxBody  = 1 << 20
)

// newService wires the real server, processor and handler on httptest.
func newService(t *testing.T) *httptest.Server {
	ts, _ := newServiceWithInternal(t)
	return ts
}

// newServiceWithInternal also serves the internal listener's routes
// (/metrics).
func newServiceWithInternal(t *testing.T) (*httptest.Server, *httptest.Server) {
	t.Helper()
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{Service: "preprocess-test", Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	m, err := preprocessor.NewMetrics(tel.Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := preprocessor.New(preprocessor.Options{Limits: imagedecode.Limits{MaxBytes: maxBytes, MaxPixels: 50_000_000}}, m)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := server.New(server.Config{BodyLimit: maxBody}, log, tel, buildinfo.Read("preprocess", "test"))
	httpapi.New(p, httpapi.Config{MaxBytes: maxBytes, MaxBatchImages: 4, Timeout: 5 * time.Second}).Register(srv.Echo)
	ts := httptest.NewServer(srv.Echo)
	t.Cleanup(ts.Close)
	internal := httptest.NewServer(srv.Internal)
	t.Cleanup(internal.Close)
	return ts, internal
}

func corpus(name string) []byte {
	for _, c := range imagecorpus.Generate() {
		if c.Name == name {
			return c.Data
		}
	}
	panic("no corpus case " + name)
}

func post(t *testing.T, url, ctype string, body []byte, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func envelopeCode(t *testing.T, b []byte) string {
	t.Helper()
	var env apierror.Envelope
	if err := json.Unmarshal(b, &env); err != nil || env.Error == nil {
		t.Fatalf("not an error envelope: %q", b)
	}
	if env.Error.RequestID == "" {
		t.Errorf("envelope without request_id: %s", b)
	}
	return env.Error.Code
}

func multipartBody(t *testing.T, field string, parts ...[]byte) (string, []byte) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for i, p := range parts {
		w, err := mw.CreateFormFile(field, fmt.Sprintf("%d.bin", i))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write(p)
	}
	_ = mw.Close()
	return mw.FormDataContentType(), b.Bytes()
}

func TestPreprocessClient(t *testing.T) {
	ts := newService(t)
	c := preprocessv1.Client{BaseURL: ts.URL}
	img := corpus("jpeg-exif-orientation-6")
	tt, facts, err := c.Preprocess(context.Background(), img, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tt.DType != tensorv1.Float32 || fmt.Sprint(tt.Shape) != "[1 3 224 224]" {
		t.Fatalf("tensor %s %v", tt.DType, tt.Shape)
	}
	if facts.Format != "jpeg" || facts.Orientation != 6 || facts.Width != 64 || facts.Height != 96 || len(facts.PHash) != 16 || facts.Bytes != len(img) {
		t.Fatalf("facts %+v", facts)
	}
	spec := preprocessv1.ImageNet()
	spec.DType, spec.Layout, spec.Width, spec.Height, spec.ResizeShorter = "float16", "NHWC", 64, 32, 80
	tt, _, err = c.Preprocess(context.Background(), img, &spec)
	if err != nil {
		t.Fatal(err)
	}
	if tt.DType != tensorv1.Float16 || fmt.Sprint(tt.Shape) != "[1 32 64 3]" {
		t.Fatalf("tensor %s %v", tt.DType, tt.Shape)
	}
	spec.DType = "uint8"
	if tt, _, err = c.Preprocess(context.Background(), img, &spec); err != nil || tt.DType != tensorv1.Uint8 || len(tt.Data) != 32*64*3 {
		t.Fatalf("uint8: %v, tensor %s %v of %d bytes", err, tt.DType, tt.Shape, len(tt.Data))
	}
	// A caller that never reads the hash has it skipped (HeaderSkip); the
	// tensor is the same.
	want, _, err := c.Preprocess(context.Background(), img, nil)
	if err != nil {
		t.Fatal(err)
	}
	quick := preprocessv1.Client{BaseURL: ts.URL, SkipPHash: true}
	got, facts, err := quick.Preprocess(context.Background(), img, nil)
	if err != nil {
		t.Fatal(err)
	}
	if facts.PHash != "" || facts.Format != "jpeg" || !bytes.Equal(got.Data, want.Data) {
		t.Fatalf("skipping the hash: facts %+v, tensor equal %v", facts, bytes.Equal(got.Data, want.Data))
	}
}

func TestPreprocessRequests(t *testing.T) {
	ts := newService(t)
	url := ts.URL + preprocessv1.RoutePreprocess
	jpg := corpus("jpeg-baseline")
	mpType, mpBody := multipartBody(t, "image", jpg)
	tests := []struct {
		name   string
		ctype  string
		body   []byte
		hdr    map[string]string
		status int
		code   string
	}{
		{"jpeg", "image/jpeg", jpg, nil, 200, ""},
		{"wrong content type, real jpeg", "text/plain", jpg, nil, 200, ""},
		{"no content type", "", jpg, nil, 200, ""},
		{"multipart sent to the single route", mpType, mpBody, nil, 415, "unsupported_format"},
		{"empty body", "image/jpeg", nil, nil, 400, "empty_body"},
		{"html as jpeg", "image/jpeg", corpus("html-saved-as-jpg"), nil, 415, "unsupported_format"},
		{"truncated", "image/jpeg", corpus("jpeg-truncated"), nil, 422, "corrupt_image"},
		{"png bomb", "image/png", corpus("png-bomb-50000x50000"), nil, 422, "dimensions_too_large"},
		{"over the image byte limit", "image/jpeg", append(append([]byte{}, jpg...), make([]byte, maxBytes)...), nil, 413, "image_too_large"},
		{"over the body limit", "image/jpeg", make([]byte, maxBody+1), nil, 413, "payload_too_large"},
		{"bad spec header", "image/jpeg", jpg, map[string]string{preprocessv1.HeaderSpec: `{"width":0}`}, 400, "invalid_argument"},
		{"spec header not json", "image/jpeg", jpg, map[string]string{preprocessv1.HeaderSpec: `nope`}, 400, "invalid_argument"},
		{"spec header unknown field", "image/jpeg", jpg, map[string]string{preprocessv1.HeaderSpec: `{"colour":"red"}`}, 400, "invalid_argument"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := post(t, url, tc.ctype, tc.body, tc.hdr)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			if tc.code != "" {
				if got := envelopeCode(t, b); got != tc.code {
					t.Fatalf("code %q, want %q", got, tc.code)
				}
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != tensorv1.MediaType {
				t.Fatalf("content type %q", ct)
			}
			if resp.ContentLength != int64(len(b)) {
				t.Fatalf("Content-Length %d for a %d byte tensor: callers size their read buffer from it", resp.ContentLength, len(b))
			}
			if _, err := tensorv1.Unmarshal(b); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDebugJSON(t *testing.T) {
	ts := newService(t)
	resp, b := post(t, ts.URL+preprocessv1.RoutePreprocess, "image/png", corpus("png-rgb8"), map[string]string{"Accept": "application/json"})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	var d preprocessv1.DebugResponse
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.Facts.Format != "png" || d.DType != "float32" || fmt.Sprint(d.Shape) != "[1 3 224 224]" || len(d.Data) != 3*224*224 || d.Spec != preprocessv1.ImageNet() {
		t.Fatalf("debug view: facts %+v dtype %s shape %v, %d values", d.Facts, d.DType, d.Shape, len(d.Data))
	}
	// top-left is red: R channel high, B channel low (normalised)
	if d.Data[0] < 1 || d.Data[2*224*224] > 0 {
		t.Fatalf("top-left pixel R %.2f B %.2f, want red", d.Data[0], d.Data[2*224*224])
	}
}

func TestBatch(t *testing.T) {
	ts := newService(t)
	c := preprocessv1.Client{BaseURL: ts.URL}
	good, bad := corpus("png-rgb8"), corpus("jpeg-truncated")
	big := append(append([]byte{}, corpus("jpeg-baseline")...), make([]byte, maxBytes)...)
	meta, tt, err := c.PreprocessBatch(context.Background(), [][]byte{good, bad, big, corpus("webp-lossy")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tt == nil || fmt.Sprint(tt.Shape) != "[2 3 224 224]" {
		t.Fatalf("tensor %v", tt)
	}
	want := []struct {
		row  int
		code string
	}{{0, ""}, {-1, "corrupt_image"}, {-1, "image_too_large"}, {1, ""}}
	for i, it := range meta.Items {
		code := ""
		if it.Error != nil {
			code = it.Error.Code
		}
		if it.Row != want[i].row || code != want[i].code || (code == "" && it.Facts == nil) {
			t.Errorf("item %d: row %d code %q, want row %d code %q", i, it.Row, code, want[i].row, want[i].code)
		}
	}

	url := ts.URL + preprocessv1.RoutePreprocessBatch
	otherType, otherBody := multipartBody(t, "file", good)
	fiveType, fiveBody := multipartBody(t, "image", good, good, good, good, good)
	hugeType, hugeBody := multipartBody(t, "image", make([]byte, maxBody))
	tests := []struct {
		name   string
		ctype  string
		body   []byte
		status int
		code   string
	}{
		{"not multipart", "image/png", good, 415, "unsupported_media_type"},
		{"no image parts", otherType, otherBody, 400, "empty_body"},
		{"too many images", fiveType, fiveBody, 400, "invalid_argument"},
		{"huge multipart body", hugeType, hugeBody, 413, "payload_too_large"},
		{"broken multipart", "multipart/form-data; boundary=xyz", []byte("--xyz\r\nnonsense"), 400, "bad_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := post(t, url, tc.ctype, tc.body, nil)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			if got := envelopeCode(t, b); got != tc.code {
				t.Fatalf("code %q, want %q", got, tc.code)
			}
		})
	}
}

// TestHostileCorpusOverHTTP sends every corpus case straight to the
// service: each gets its 4xx code or a correct result, never a 5xx.
func TestHostileCorpusOverHTTP(t *testing.T) {
	ts, internal := newServiceWithInternal(t)
	c := preprocessv1.Client{BaseURL: ts.URL}
	for _, cs := range imagecorpus.Generate() {
		t.Run(cs.Name, func(t *testing.T) {
			_, facts, err := c.Preprocess(context.Background(), cs.Data, nil)
			if cs.WantCode == "" {
				if err != nil {
					t.Fatal(err)
				}
				if facts.Format != cs.Format || facts.Orientation != cs.Orientation {
					t.Fatalf("facts %+v", facts)
				}
				return
			}
			e, ok := apierror.As(err)
			if !ok || e.Code != cs.WantCode || e.Status != preprocessv1.StatusOf(cs.WantCode) {
				t.Fatalf("got %v, want %d %s", err, preprocessv1.StatusOf(cs.WantCode), cs.WantCode)
			}
		})
	}
	resp, err := http.Get(internal.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`preprocess_rejections_total{code="corrupt_image"}`, `preprocess_decode_duration_seconds_count{format="webp"}`, "preprocess_bytes_in_total", "preprocess_decode_memory_bytes 0"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
