package bodyfile

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
)

func TestReplay(t *testing.T) {
	body := bytes.Repeat([]byte("tensor"), 200_000)
	var got [][]byte
	var lengths []int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got, lengths = append(got, b), append(lengths, r.ContentLength)
		if r.Header.Get("Content-Type") != "application/x-test" {
			w.WriteHeader(http.StatusUnsupportedMediaType)
		}
	}))
	defer srv.Close()
	f, err := Write(body)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // replayed: every request sends the whole file
		req, err := f.NewRequest(context.Background(), http.MethodPost, srv.URL, "application/x-test")
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	for i := range got {
		if !bytes.Equal(got[i], body) || lengths[i] != int64(len(body)) {
			t.Fatalf("request %d: %d bytes with Content-Length %d, want %d", i, len(got[i]), lengths[i], len(body))
		}
	}
	if err := f.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.Path); !os.IsNotExist(err) {
		t.Fatalf("file still there after Remove: %v", err)
	}
}
