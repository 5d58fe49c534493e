package httpapi

import (
	"bytes"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/bufpool"
)

// FuzzParseSearch: whatever the JSON body and query string, parsing either
// succeeds with a valid query or refuses with a 4xx apierror; it never panics.
func FuzzParseSearch(f *testing.F) {
	seeds := []struct{ q, body string }{
		{"", `{"sku":"SKU-1"}`},
		{"top_k=5&category=a,b", `{"image_url":"http://example.com/a.png"}`},
		{"min_score=0.5", `{"sku":"x","filters":{"category":["a"],"price_min":1,"price_max":2,"in_stock":true}}`},
		{"top_k=-1", `{"sku":"x","top_k":1001}`},
		{"price_min=NaN", `{"sku":"x"}`},
		{"", `{"sku":"a\u0000b"}`},
		{"model=../x", `{}`},
		{"", `[]`},
		{"", `{"sku":"x"} trailing`},
	}
	for _, s := range seeds {
		f.Add(s.q, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, q string, body []byte) {
		if _, err := url.ParseQuery(q); err != nil {
			return
		}
		r := httptest.NewRequest(http.MethodPost, "/v1/search", bytes.NewReader(body))
		r.URL.RawQuery = q
		r.Header.Set("Content-Type", "application/json")
		in, err := parseSearch(r, 1<<20, nil)
		if err != nil {
			e, ok := apierror.As(err)
			if !ok || e.Status < 400 || e.Status > 499 {
				t.Fatalf("refusal %v is not a 4xx apierror", err)
			}
			return
		}
		if in.Query.TopK < 1 || in.Query.TopK > 1000 {
			t.Fatalf("accepted top_k %d", in.Query.TopK)
		}
		if (in.SKU == "") == (in.ImageURL == "") {
			t.Fatalf("accepted sku %q with image_url %q", in.SKU, in.ImageURL)
		}
	})
}

// FuzzParseMetadata: metadata is a JSON object or a 4xx invalid_metadata.
func FuzzParseMetadata(f *testing.F) {
	for _, s := range []string{`{}`, `{"price":1.5,"in_stock":true}`, `{"a":{"b":[1,2]}}`, `[1]`, `{"x":1e999}`, `{`, `null`, `"s"`, `{} {}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseMetadata(s)
		if err != nil {
			if apierror.CodeOf(err) != CodeInvalidMetadata {
				t.Fatalf("refusal %v has the wrong code", err)
			}
			return
		}
		if p == nil {
			t.Fatal("nil payload without an error")
		}
	})
}

// FuzzMultipartForm: whatever the multipart body, parsing it into pooled
// buffers succeeds or refuses with a 4xx apierror, never panics, and every
// pooled part goes back once the form is released, on either outcome.
func FuzzMultipartForm(f *testing.F) {
	const boundary = "b0undary"
	seed := func(parts ...string) []byte {
		var b bytes.Buffer
		w := multipart.NewWriter(&b)
		w.SetBoundary(boundary)
		for i, p := range parts {
			pw, _ := w.CreateFormFile("image", fmt.Sprintf("f%d", i))
			pw.Write([]byte(p))
		}
		w.Close()
		return b.Bytes()
	}
	f.Add(seed("jpegbytes"))
	f.Add(seed("a", "b", ""))
	f.Add([]byte("--" + boundary + "\r\nContent-Disposition: form-data; name=\"top_k\"\r\n\r\n5\r\n--" + boundary + "--\r\n"))
	f.Add([]byte("--" + boundary + "\r\n\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/v1/search", bytes.NewReader(body))
		r.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
		var buffers uploadBuffers
		in, err := parseSearch(r, 4096, &buffers)
		var leases []*bufpool.Lease
		if in.form != nil {
			for _, ls := range in.form.leases {
				leases = append(leases, ls...)
			}
		}
		in.release()
		for _, l := range leases {
			if l.Held() {
				t.Fatal("a pooled part is still held after release")
			}
		}
		if err != nil {
			e, ok := apierror.As(err)
			if !ok || e.Status < 400 || e.Status > 499 {
				t.Fatalf("refusal %v is not a 4xx apierror", err)
			}
			return
		}
		if in.Query.ImageHold != nil && len(in.Image) == 0 {
			t.Fatal("an image hold without an image")
		}
	})
}
