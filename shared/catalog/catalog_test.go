package catalog

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func readAll(t *testing.T, in string, f Format) ([]Record, error) {
	t.Helper()
	r := NewReader(strings.NewReader(in), f)
	var out []Record
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, rec)
	}
}

func fp(f float64) *float64 { return &f }
func bp(b bool) *bool       { return &b }

func TestParseJSONLine(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Product
		code string
	}{
		{"reference line", `{"sku": "SK-1", "title": "Cup", "category": "kitchen", "price": 12.0, "image": "images/a.png", "width": 600, "height": 400}`,
			Product{SKU: "SK-1", Image: "images/a.png", Title: "Cup", Category: "kitchen", Price: fp(12), Extra: map[string]any{"width": int64(600), "height": int64(400)}}, ""},
		{"all fields", `{"sku":"a","image":"https://x/y.jpg","brand":"B","price":"3.5","in_stock":true,"tags":["x"]}`,
			Product{SKU: "a", Image: "https://x/y.jpg", Brand: "B", Price: fp(3.5), InStock: bp(true), Extra: map[string]any{"tags": []any{"x"}}}, ""},
		{"in_stock string", `{"sku":"a","image":"i","in_stock":"no"}`, Product{SKU: "a", Image: "i", InStock: bp(false)}, ""},
		{"numeric sku", `{"sku":12345,"image":"i"}`, Product{SKU: "12345", Image: "i"}, ""},
		{"null price is absent", `{"sku":"a","image":"i","price":null}`, Product{SKU: "a", Image: "i"}, ""},
		{"not json", `{"sku":`, Product{}, CodeBadJSON},
		{"array", `[1,2]`, Product{}, CodeBadJSON},
		{"null", `null`, Product{}, CodeBadJSON},
		{"two values", `{"sku":"a","image":"i"} {}`, Product{}, CodeBadJSON},
		{"missing sku", `{"image":"i"}`, Product{}, CodeMissingSKU},
		{"blank sku", `{"sku":"  ","image":"i"}`, Product{}, CodeMissingSKU},
		{"sku object", `{"sku":{},"image":"i"}`, Product{}, CodeBadFieldType},
		{"sku control char", `{"sku":"a\u0000b","image":"i"}`, Product{}, CodeBadSKU},
		{"sku too long", `{"sku":"` + strings.Repeat("x", MaxSKULen+1) + `","image":"i"}`, Product{}, CodeBadSKU},
		{"missing image", `{"sku":"a"}`, Product{}, CodeMissingImage},
		{"bad price", `{"sku":"a","image":"i","price":"cheap"}`, Product{}, CodeBadPrice},
		{"negative price", `{"sku":"a","image":"i","price":-1}`, Product{}, CodeBadPrice},
		{"price bool", `{"sku":"a","image":"i","price":true}`, Product{}, CodeBadPrice},
		{"bad in_stock", `{"sku":"a","image":"i","in_stock":"maybe"}`, Product{}, CodeBadInStock},
		{"title number", `{"sku":"a","image":"i","title":[1]}`, Product{}, CodeBadFieldType},
		{"invalid utf8", "{\"sku\":\"a\xff\",\"image\":\"i\"}", Product{}, CodeBadEncoding},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseJSONLine([]byte(tc.line))
			if tc.code != "" {
				if err == nil || err.Code != tc.code {
					t.Fatalf("got err %v, want code %s", err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestReaderJSONLLinesAndErrors(t *testing.T) {
	in := "{\"sku\":\"a\",\"image\":\"1.png\"}\n\n{bad\r\n{\"sku\":\"b\",\"image\":\"2.png\"}\r\n" +
		"{\"sku\":\"c\",\"image\":\"" + strings.Repeat("x", MaxLineBytes) + "\"}\n{\"sku\":\"d\",\"image\":\"4.png\"}"
	recs, err := readAll(t, in, JSONL)
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		line int
		sku  string
		code string
	}
	var g []got
	for _, r := range recs {
		c := ""
		if r.Err != nil {
			c = r.Err.Code
			if r.Err.Line != r.Line {
				t.Errorf("error line %d != record line %d", r.Err.Line, r.Line)
			}
		}
		g = append(g, got{r.Line, r.Product.SKU, c})
	}
	want := []got{{1, "a", ""}, {3, "", CodeBadJSON}, {4, "b", ""}, {5, "", CodeLineTooLong}, {6, "d", ""}}
	if !reflect.DeepEqual(g, want) {
		t.Fatalf("got %+v\nwant %+v", g, want)
	}
}

func TestReaderCSV(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		skus    []string
		codes   []string
		readErr bool
	}{
		{"basic", "sku,image,title,price,in_stock,colour\nA,a.png,Cup,3.5,yes,red\nB,b.png,,,,\n", []string{"A", "B"}, []string{"", ""}, false},
		{"bom and case", "\ufeffSKU,Image\nA,a.png\n", []string{"A"}, []string{""}, false},
		{"quoted multiline", "sku,image,title\nA,a.png,\"two\nlines\"\nB,b.png,x\n", []string{"A", "B"}, []string{"", ""}, false},
		{"field count", "sku,image\nA,a.png,extra\nB,b.png\n", []string{"", "B"}, []string{CodeBadCSV, ""}, false},
		{"bad quote", "sku,image\nA,\"a.png\nB,b.png\n", []string{""}, []string{CodeBadCSV}, false},
		{"bad price", "sku,image,price\nA,a.png,abc\nB,b.png,1\n", []string{"", "B"}, []string{CodeBadPrice, ""}, false},
		{"missing image value", "sku,image\nA,\n", []string{""}, []string{CodeMissingImage}, false},
		{"no image column", "sku,title\nA,x\n", nil, nil, true},
		{"empty", "", nil, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			recs, err := readAll(t, tc.in, CSV)
			if (err != nil) != tc.readErr {
				t.Fatalf("read error %v, want error %v", err, tc.readErr)
			}
			var skus, codes []string
			for _, r := range recs {
				skus = append(skus, r.Product.SKU)
				c := ""
				if r.Err != nil {
					c = r.Err.Code
				}
				codes = append(codes, c)
			}
			if !reflect.DeepEqual(skus, tc.skus) || !reflect.DeepEqual(codes, tc.codes) {
				t.Fatalf("got skus %q codes %q, want %q %q", skus, codes, tc.skus, tc.codes)
			}
		})
	}
}

func TestCSVExtraAndPayload(t *testing.T) {
	recs, err := readAll(t, "sku,image,brand,price,in_stock,colour\nA,a.png,Acme,2,false,red\n", CSV)
	if err != nil || len(recs) != 1 || recs[0].Err != nil {
		t.Fatalf("recs %+v err %v", recs, err)
	}
	got := recs[0].Product.Payload()
	want := map[string]any{"sku": "A", "image": "a.png", "brand": "Acme", "price": 2.0, "in_stock": false, "colour": "red"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("payload %v, want %v", got, want)
	}
}

func TestDetectFormat(t *testing.T) {
	for in, want := range map[string]Format{"a.csv": CSV, "A.CSV": CSV, "x/catalog.jsonl": JSONL, "https://h/c.csv?sig=1": CSV, "c.ndjson": JSONL, "noext": JSONL} {
		if got := DetectFormat(in); got != want {
			t.Errorf("DetectFormat(%q) = %s, want %s", in, got, want)
		}
	}
}

// sharedDir is the read-only data folder beside the repo.
func sharedDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("LOOKALIKE_SHARED"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "shared")
}

func TestReferenceCatalog(t *testing.T) {
	p := filepath.Join(sharedDir(t), "catalog", "catalog.jsonl")
	f, err := os.Open(p)
	if err != nil {
		t.Fatalf("reference catalog missing (set LOOKALIKE_SHARED): %v", err)
	}
	defer f.Close()
	r := NewReader(f, DetectFormat(p))
	n := 0
	skus := map[string]bool{}
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if rec.Err != nil {
			t.Fatalf("reference line rejected: %v", rec.Err)
		}
		if rec.Product.Price == nil || rec.Product.Title == "" || rec.Product.IsURL() {
			t.Fatalf("line %d parsed badly: %+v", rec.Line, rec.Product)
		}
		skus[rec.Product.SKU] = true
		n++
	}
	if n != 50 || len(skus) != 50 {
		t.Fatalf("read %d records, %d SKUs, want 50", n, len(skus))
	}
}

func FuzzParseJSONLine(f *testing.F) {
	f.Add([]byte(`{"sku": "SK-1", "title": "Cup", "price": 12.0, "image": "images/a.png", "width": 600}`))
	f.Add([]byte(`{"sku":"a","image":"i","in_stock":"yes","price":"1e3"}`))
	f.Add([]byte(`{"sku":1,"image":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, line []byte) {
		p, err := ParseJSONLine(line)
		if err != nil {
			if err.Code == "" {
				t.Fatalf("error without code: %v", err)
			}
			return
		}
		if p.SKU == "" || p.Image == "" {
			t.Fatalf("accepted product without sku or image: %+v", p)
		}
		if p.Price != nil && *p.Price < 0 {
			t.Fatalf("negative price accepted")
		}
		_ = p.Payload()
	})
}

func FuzzReaderCSV(f *testing.F) {
	f.Add("sku,image,price\nA,a.png,1\nB,\"b\nc\",x\n")
	f.Add("sku,image\n\"")
	f.Fuzz(func(t *testing.T, in string) {
		r := NewReader(strings.NewReader(in), CSV)
		for i := 0; i < 10000; i++ {
			rec, err := r.Next()
			if err != nil {
				return
			}
			if rec.Err == nil && (rec.Product.SKU == "" || rec.Product.Image == "") {
				t.Fatalf("accepted product without sku or image: %+v", rec.Product)
			}
		}
	})
}

// A file that is not a catalog is refused without its contents in the error.
func TestHeaderErrorQuotesNoContent(t *testing.T) {
	for _, body := range []string{
		"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n",
		"name,secret-token-value\nA,B\n",
	} {
		_, err := NewReader(strings.NewReader(body), CSV).Next()
		if err == nil || !strings.HasPrefix(err.Error(), CodeMissingHeader) {
			t.Fatalf("%q: err %v, want %s", body, err, CodeMissingHeader)
		}
		for _, part := range []string{"root", "/bin/bash", "secret-token-value"} {
			if strings.Contains(err.Error(), part) {
				t.Fatalf("error %q quotes the file (%q)", err, part)
			}
		}
	}
}
