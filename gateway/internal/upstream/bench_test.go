package upstream

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkPoolOverhead measures a request through the Pool (balancing,
// breaker, deadline, retry bookkeeping) against the same request through a
// plain http.Client to the same loopback server, interleaved in one run, and
// reports the ratio pool/plain (1.0 = no overhead).
func BenchmarkPoolOverhead(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 4096)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write(body)
	}))
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	plain := &http.Client{Transport: tr}
	p, err := New(Options{Name: "bench", URLs: []string{srv.URL, srv.URL + "/"}, Transport: tr, Retryable: AllRequests, Log: quietLog()})
	if err != nil {
		b.Fatal(err)
	}
	send := func(d interface {
		Do(*http.Request) (*http.Response, error)
	}, base string) time.Duration {
		start := time.Now()
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/embed", bytes.NewReader(body))
		resp, err := d.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return time.Since(start)
	}
	var tPool, tPlain time.Duration
	b.ResetTimer()
	for range b.N {
		tPool += send(p, p.BaseURL())
		tPlain += send(plain, srv.URL)
	}
	b.ReportMetric(float64(tPool)/float64(tPlain), "pool/plain")
	b.ReportMetric(float64(tPool.Microseconds())/float64(b.N), "pool-µs/op")
	b.ReportMetric(float64(tPlain.Microseconds())/float64(b.N), "plain-µs/op")
}
