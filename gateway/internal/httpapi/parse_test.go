package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/lookalike-dev/lookalike/shared/apierror"
)

func TestMultipartForm(t *testing.T) {
	type part struct {
		name, file string // file "" is a text field
		data       []byte
	}
	body := func(parts ...part) ([]byte, string) {
		var b bytes.Buffer
		w := multipart.NewWriter(&b)
		for _, p := range parts {
			var pw io.Writer
			if p.file == "" {
				pw, _ = w.CreateFormField(p.name)
			} else {
				pw, _ = w.CreateFormFile(p.name, p.file)
			}
			pw.Write(p.data)
		}
		w.Close()
		return b.Bytes(), w.FormDataContentType()
	}
	photo := bytes.Repeat([]byte("jpeg"), 100_000)
	many := make([]part, 65)
	for i := range many {
		many[i] = part{name: "f", data: []byte("x")}
	}
	tests := []struct {
		name      string
		parts     []part
		chunked   bool // no Content-Length
		limit     int64
		wantCode  string
		wantImage []byte
		wantValue string
	}{
		{"image and fields", []part{{"top_k", "", []byte("5")}, {"image", "a.jpg", photo}}, false, 1 << 20, "", photo, "5"},
		{"chunked upload", []part{{"image", "a.jpg", photo}, {"top_k", "", []byte("5")}}, true, 1 << 20, "", photo, "5"},
		{"two files: first is the image", []part{{"image", "a.jpg", photo}, {"image", "b.jpg", []byte("second")}}, false, 1 << 20, "", photo, ""},
		{"over the byte limit", []part{{"image", "a.jpg", photo}}, false, 1000, apierror.CodePayloadTooLarge, nil, ""},
		{"over the byte limit, chunked", []part{{"image", "a.jpg", photo}}, true, 1000, apierror.CodePayloadTooLarge, nil, ""},
		{"too many parts", many, false, 1 << 20, CodeBadMultipart, nil, ""},
		{"text fields too large", []part{{"a", "", bytes.Repeat([]byte("x"), 600<<10)}, {"b", "", bytes.Repeat([]byte("y"), 600<<10)}}, false, 4 << 20, CodeBadMultipart, nil, ""},
	}
	for _, tt := range tests {
		for _, pooled := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/pooled=%v", tt.name, pooled), func(t *testing.T) {
				b, ct := body(tt.parts...)
				r := httptest.NewRequest("POST", "/v1/search", bytes.NewReader(b))
				r.Header.Set("Content-Type", ct)
				if tt.chunked {
					r.ContentLength = -1
				}
				var buffers *uploadBuffers
				if pooled {
					buffers = &uploadBuffers{}
				}
				f, err := multipartForm(r, tt.limit, buffers)
				if tt.wantCode != "" {
					var ae *apierror.Error
					if !errors.As(err, &ae) || ae.Code != tt.wantCode {
						t.Fatalf("err %v, want code %s", err, tt.wantCode)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if got := f.file("image"); !bytes.Equal(got, tt.wantImage) {
					t.Errorf("image part: %d bytes, want %d", len(got), len(tt.wantImage))
				}
				if got := strings.Join(f.Value["top_k"], ","); got != tt.wantValue {
					t.Errorf("top_k %q, want %q", got, tt.wantValue)
				}
				h := f.hold("image")
				if pooled != (h != nil) && tt.wantImage != nil {
					t.Fatalf("image lease %v with pooled=%v", h, pooled)
				}
				if h != nil {
					h.Retain() // a reader past the request, as a shadow query
					f.release()
					if !h.Held() {
						t.Fatal("the image went back to the pool while a reader held it")
					}
					h.Release()
					if h.Held() {
						t.Fatal("the image never went back to the pool")
					}
				}
			})
		}
	}
}
