package replay

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestReplayKeepsTheConnection(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "text/plain" || r.URL.RawQuery != "top_k=3" {
			http.Error(w, "bad request line or headers", http.StatusBadRequest)
			return
		}
		switch r.URL.Path {
		case "/chunked": // no Content-Length: the answer comes chunked
			fl := w.(http.Flusher)
			fmt.Fprintf(w, "got ")
			fl.Flush()
			fmt.Fprintf(w, "%d bytes", len(b))
		case "/close":
			w.Header().Set("Connection", "close")
			fmt.Fprintf(w, "got %d bytes", len(b))
		default:
			fmt.Fprintf(w, "got %d bytes: %s", len(b), b[:5])
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	body := []byte(strings.Repeat("hello", 100_000)) // 500 KB, like an upload
	var reqs []Request
	for _, path := range []string{"/", "/chunked", "/close"} {
		r, err := NewPost(u.Host, path+"?top_k=3", "text/plain", body)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Remove()
		reqs = append(reqs, r)
	}
	c := NewClient(u.Host, 5*time.Second)
	defer c.Close()
	for i, tc := range []struct {
		req       Request
		want      string
		wantConns int32
	}{
		{reqs[0], "got 500000 bytes: hello", 1},
		{reqs[0], "got 500000 bytes: hello", 1}, // kept alive
		{reqs[1], "got 500000 bytes", 1},
		{reqs[2], "got 500000 bytes", 1},        // the server closes after answering
		{reqs[0], "got 500000 bytes: hello", 2}, // redialled
	} {
		st, b, err := c.Do(tc.req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if st != http.StatusOK || string(b) != tc.want {
			t.Fatalf("request %d: %d %q, want 200 %q", i, st, b, tc.want)
		}
		if n := conns.Load(); n != tc.wantConns {
			t.Fatalf("request %d: %d connections, want %d", i, n, tc.wantConns)
		}
	}
}

func TestReplayReportsADeadServer(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	u, _ := url.Parse(srv.URL)
	srv.Close()
	r, err := NewPost(u.Host, "/", "text/plain", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Remove()
	c := NewClient(u.Host, time.Second)
	defer c.Close()
	if _, _, err := c.Do(r); err == nil {
		t.Fatal("a request to a closed server succeeded")
	}
}
