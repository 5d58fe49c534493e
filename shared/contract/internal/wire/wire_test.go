package wire

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/lookalike-dev/lookalike/shared/bufpool"
)

// retryOnce is a Doer that sends a request twice, the second time with a
// body from GetBody, as a retrying client does.
type retryOnce struct{ c *http.Client }

func (r retryOnce) Do(req *http.Request) (*http.Response, error) {
	resp, err := r.c.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	again := req.Clone(req.Context())
	if again.Body, err = req.GetBody(); err != nil {
		return nil, err
	}
	return r.c.Do(again)
}

func TestSendPartsAsOneDeclaredBody(t *testing.T) {
	type got struct {
		body          []byte
		contentLength int64
		chunked       bool
	}
	var seen []got
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen = append(seen, got{b, r.ContentLength, len(r.TransferEncoding) > 0})
		w.Write(b)
	}))
	defer srv.Close()

	big := bytes.Repeat([]byte{7}, 600_000)
	tests := []struct {
		name  string
		parts [][]byte
		want  []byte
	}{
		{"header and data", [][]byte{[]byte("LKT1head"), big}, append([]byte("LKT1head"), big...)},
		{"one part", [][]byte{[]byte("just this")}, []byte("just this")},
		{"three parts, one empty", [][]byte{[]byte("a"), nil, []byte("bc")}, []byte("abc")},
		{"all empty", [][]byte{nil, {}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen = nil
			b, _, err := Send(context.Background(), retryOnce{srv.Client()}, Request{Method: http.MethodPost, URL: srv.URL, ContentType: "application/octet-stream", Parts: tt.parts})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, tt.want) {
				t.Fatalf("echoed %d bytes, want %d", len(b), len(tt.want))
			}
			if len(seen) != 2 {
				t.Fatalf("server saw %d requests, want 2 (the first and the replay)", len(seen))
			}
			for i, s := range seen {
				if !bytes.Equal(s.body, tt.want) {
					t.Errorf("request %d carried %d bytes, want %d", i, len(s.body), len(tt.want))
				}
				if s.chunked || s.contentLength != int64(len(tt.want)) {
					t.Errorf("request %d: Content-Length %d chunked %v, want a declared %d", i, s.contentLength, s.chunked, len(tt.want))
				}
			}
			// The caller's parts are untouched by the sends.
			if len(tt.parts) == 2 && len(tt.parts[1]) != len(big) && tt.name == "header and data" {
				t.Errorf("parts consumed: %d bytes left", len(tt.parts[1]))
			}
		})
	}
}

// countingHold is a bufpool.Holder that counts.
type countingHold struct {
	mu              sync.Mutex
	retains, closes int
}

func (h *countingHold) Retain()  { h.mu.Lock(); h.retains++; h.mu.Unlock() }
func (h *countingHold) Release() { h.mu.Lock(); h.closes++; h.mu.Unlock() }

func TestSendHoldsPartsUntilEveryBodyIsClosed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	var h countingHold
	var pool bufpool.Pool
	b, _, err := Send(context.Background(), retryOnce{srv.Client()}, Request{Method: http.MethodPost, URL: srv.URL,
		Parts: [][]byte{[]byte("head"), bytes.Repeat([]byte{1}, 100_000)}, Hold: &h, Pool: &pool})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "ok" || cap(b)&(cap(b)-1) != 0 {
		t.Fatalf("answer %q in a buffer of cap %d, want \"ok\" in a pooled one", b, cap(b))
	}
	// net/http closes a request body in its own goroutine, possibly after
	// Do returned: wait for it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.mu.Lock()
		r, c := h.retains, h.closes
		h.mu.Unlock()
		if r == 2 && c == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retained %d, released %d times, want 2 and 2 (the first send and the replay)", r, c)
		}
		time.Sleep(time.Millisecond)
	}
}
