package safefetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lookalike-dev/lookalike/shared/apierror"
)

// mapResolver answers from a fixed table and counts lookups.
type mapResolver struct {
	mu    sync.Mutex
	table map[string][]string
	calls map[string]int
	// after, when set, is answered for a name from its second lookup on
	// (a DNS rebinding attacker).
	after map[string][]string
}

func (r *mapResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.calls == nil {
		r.calls = map[string]int{}
	}
	r.calls[host]++
	ss, ok := r.table[host]
	if r.calls[host] > 1 && r.after[host] != nil {
		ss = r.after[host]
	}
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out, nil
}

func pngBytes(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewRGBA(image.Rect(0, 0, 4, 4))); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// publicIP is what test names resolve to; the test dialer sends its
// connections to a local server, as if that server were public.
const publicIP = "93.184.216.34"

// newFetcher returns a Fetcher whose dial reaches srv for publicIP and
// records every address it was asked to dial.
func newFetcher(t *testing.T, srv *httptest.Server, opts Options) (*Fetcher, *[]string) {
	t.Helper()
	f := New(opts)
	var mu sync.Mutex
	dialed := &[]string{}
	f.dial = func(ctx context.Context, network string, addr netip.AddrPort) (net.Conn, error) {
		mu.Lock()
		*dialed = append(*dialed, addr.String())
		mu.Unlock()
		if addr.Addr().String() != publicIP || srv == nil {
			return nil, fmt.Errorf("test dialer: unexpected dial to %s", addr)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, srv.Listener.Addr().String())
	}
	return f, dialed
}

func wantCode(t *testing.T, err error, status int, code string) {
	t.Helper()
	e, ok := apierror.As(err)
	if !ok {
		t.Fatalf("error %v is not an *apierror.Error", err)
	}
	if e.Status != status || e.Code != code {
		t.Fatalf("got %d %s (%v), want %d %s", e.Status, e.Code, err, status, code)
	}
}

func TestSSRFMatrix(t *testing.T) {
	img := pngBytes(t)
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/to-loopback":
			http.Redirect(w, r, "http://127.0.0.1:"+strings.Split(srv.Listener.Addr().String(), ":")[1]+"/img", http.StatusFound)
		case "/to-private":
			http.Redirect(w, r, "http://10.0.0.5/img", http.StatusMovedPermanently)
		case "/to-metadata-name":
			http.Redirect(w, r, "http://metadata.test/latest/meta-data/", http.StatusTemporaryRedirect)
		case "/to-file":
			http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
		case "/to-userinfo":
			http.Redirect(w, r, "http://shop.test@127.0.0.1/", http.StatusFound)
		default:
			w.Write(img)
		}
	}))
	defer srv.Close()
	res := &mapResolver{table: map[string][]string{
		"shop.test":     {publicIP},
		"evil.test":     {"127.0.0.1"},
		"metadata.test": {"169.254.169.254"},
		"mixed.test":    {publicIP, "10.1.2.3"},
		"v6loop.test":   {"::1"},
		"mapped.test":   {"::ffff:192.168.0.1"},
		"nat64.test":    {"64:ff9b::a9fe:a9fe"},
		"cgnat.test":    {"100.100.100.100"},
		"ula.test":      {"fd12:3456::1"},
	}}
	cases := []struct {
		name, url string
		code      string
	}{
		{"loopback literal", "http://127.0.0.1/", CodeURLNotAllowed},
		{"decimal ip", "http://2130706433/", CodeURLNotAllowed},
		{"octal ip", "http://0177.0.0.1/", CodeURLNotAllowed},
		{"hex ip", "http://0x7f.0.0.1/", CodeURLNotAllowed},
		{"short ip", "http://127.1/", CodeURLNotAllowed},
		{"ipv6 loopback", "http://[::1]/", CodeURLNotAllowed},
		{"ipv4-mapped loopback", "http://[::ffff:127.0.0.1]/", CodeURLNotAllowed},
		{"ipv4-mapped hex loopback", "http://[::ffff:7f00:1]:8080/", CodeURLNotAllowed},
		{"nat64 loopback", "http://[64:ff9b::7f00:1]/", CodeURLNotAllowed},
		{"nat64 metadata by name", "http://nat64.test/", CodeURLNotAllowed},
		{"localhost with dot", "http://localhost./", CodeURLNotAllowed},
		{"localhost", "http://LOCALHOST:8080/", CodeURLNotAllowed},
		{"sub.localhost", "http://a.localhost/", CodeURLNotAllowed},
		{"name resolving to loopback", "http://evil.test/", CodeURLNotAllowed},
		{"name resolving to metadata", "http://metadata.test/latest/meta-data/", CodeURLNotAllowed},
		{"metadata literal", "http://169.254.169.254/latest/meta-data/", CodeURLNotAllowed},
		{"one of several addresses private", "http://mixed.test/", CodeURLNotAllowed},
		{"name resolving to ::1", "http://v6loop.test/", CodeURLNotAllowed},
		{"name resolving to mapped private", "http://mapped.test/", CodeURLNotAllowed},
		{"cgnat by name", "http://cgnat.test/", CodeURLNotAllowed},
		{"cgnat literal", "http://100.64.0.1/", CodeURLNotAllowed},
		{"ula by name", "http://ula.test/", CodeURLNotAllowed},
		{"ula literal", "http://[fc00::1]/", CodeURLNotAllowed},
		{"ipv6 link-local", "http://[fe80::1]/", CodeURLNotAllowed},
		{"ipv6 zone", "http://[fe80::1%25eth0]/", CodeURLNotAllowed},
		{"private 10/8", "http://10.0.0.1/", CodeURLNotAllowed},
		{"private 172.16/12", "https://172.16.5.4/", CodeURLNotAllowed},
		{"private 192.168/16", "http://192.168.1.1/", CodeURLNotAllowed},
		{"unspecified", "http://0.0.0.0/", CodeURLNotAllowed},
		{"unspecified v6", "http://[::]/", CodeURLNotAllowed},
		{"multicast", "http://224.0.0.1/", CodeURLNotAllowed},
		{"multicast v6", "http://[ff02::1]/", CodeURLNotAllowed},
		{"broadcast", "http://255.255.255.255/", CodeURLNotAllowed},
		{"6to4", "http://[2002:7f00:1::1]/", CodeURLNotAllowed},
		{"file scheme", "file:///etc/passwd", CodeURLNotAllowed},
		{"gopher scheme", "gopher://127.0.0.1:70/_GET", CodeURLNotAllowed},
		{"ftp scheme", "ftp://shop.test/a.png", CodeURLNotAllowed},
		{"data scheme", "data:image/png;base64,AAAA", CodeURLNotAllowed},
		{"no scheme", "//shop.test/a.png", CodeURLNotAllowed},
		{"userinfo trick", "http://shop.test@127.0.0.1/", CodeURLNotAllowed},
		{"userinfo with password", "http://shop.test:pw@127.0.0.1/", CodeURLNotAllowed},
		{"userinfo on allowed host", "http://user@shop.test/", CodeURLNotAllowed},
		{"backslash trick", "http://shop.test\\@127.0.0.1/", CodeURLNotAllowed},
		{"redirect to loopback", "http://shop.test/to-loopback", CodeURLNotAllowed},
		{"redirect to private", "http://shop.test/to-private", CodeURLNotAllowed},
		{"redirect to metadata name", "http://shop.test/to-metadata-name", CodeURLNotAllowed},
		{"redirect to file", "http://shop.test/to-file", CodeURLNotAllowed},
		{"redirect with userinfo", "http://shop.test/to-userinfo", CodeURLNotAllowed},
		{"unresolvable name", "http://nowhere.test/", CodeFetchFailed},
	}
	if len(cases) < 15 {
		t.Fatalf("matrix has %d cases, want >= 15", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, dialed := newFetcher(t, srv, Options{Resolver: res, Timeout: 3 * time.Second})
			_, err := f.Fetch(context.Background(), c.url)
			if err == nil {
				t.Fatalf("Fetch(%q) succeeded, want %s", c.url, c.code)
			}
			if apierror.CodeOf(err) != c.code {
				t.Fatalf("Fetch(%q) = %v, want code %s", c.url, err, c.code)
			}
			if e, _ := apierror.As(err); e.Status < 400 || e.Status > 499 {
				t.Fatalf("status %d is not 4xx", e.Status)
			}
			for _, d := range *dialed {
				if !strings.HasPrefix(d, publicIP+":") {
					t.Fatalf("dialed %s", d)
				}
			}
		})
	}
}

func TestAllowHostsWholeNames(t *testing.T) {
	img := pngBytes(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(img) }))
	defer srv.Close()
	res := &mapResolver{table: map[string][]string{
		"images.shop.test":          {publicIP},
		"images.shop.test.evil.com": {publicIP},
		"evilimages.shop.test":      {publicIP},
		"cdn.images.shop.test":      {publicIP},
	}}
	cases := []struct {
		url string
		ok  bool
	}{
		{"http://images.shop.test/a.png", true},
		{"http://IMAGES.shop.test./a.png", true},
		{"http://images.shop.test.evil.com/a.png", false},
		{"http://evilimages.shop.test/a.png", false},
		{"http://cdn.images.shop.test/a.png", false},
		{"http://images.shop.test@evilimages.shop.test/a.png", false},
	}
	for _, c := range cases {
		t.Run(c.url, func(t *testing.T) {
			f, _ := newFetcher(t, srv, Options{Resolver: res, AllowHosts: []string{"images.shop.test"}})
			_, err := f.Fetch(context.Background(), c.url)
			if c.ok && err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if !c.ok {
				wantCode(t, err, http.StatusBadRequest, CodeURLNotAllowed)
			}
		})
	}
}

func TestFetchLimits(t *testing.T) {
	img := pngBytes(t)
	big := append(append([]byte{}, img...), make([]byte, 4096)...)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok.png":
			w.Header().Set("Content-Type", "text/plain") // the header is not trusted; the body is sniffed
			w.Write(img)
		case "/html.jpg":
			w.Header().Set("Content-Type", "image/jpeg")
			w.Write([]byte("<!doctype html><html><body>not an image</body></html>"))
		case "/big-declared":
			w.Write(big)
		case "/big-chunked":
			w.Header().Set("Content-Type", "image/png")
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			for range 8 {
				w.Write(big[:1024])
				w.(http.Flusher).Flush()
			}
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case "/missing":
			http.NotFound(w, r)
		case "/r1":
			http.Redirect(w, r, "/r2", http.StatusFound)
		case "/r2":
			http.Redirect(w, r, "http://shop.test/r3", http.StatusFound)
		case "/r3":
			http.Redirect(w, r, "/ok.png", http.StatusFound)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		}
	}))
	defer srv.Close()
	res := &mapResolver{table: map[string][]string{"shop.test": {publicIP}}}
	cases := []struct {
		name, path string
		status     int
		code       string
	}{
		{"image", "/ok.png", 200, ""},
		{"three redirects", "/r1", 200, ""},
		{"html as jpg", "/html.jpg", http.StatusUnsupportedMediaType, CodeNotImage},
		{"too large by length", "/big-declared", http.StatusRequestEntityTooLarge, CodeFetchTooLarge},
		{"too large chunked", "/big-chunked", http.StatusRequestEntityTooLarge, CodeFetchTooLarge},
		{"slow", "/slow", http.StatusUnprocessableEntity, CodeFetchFailed},
		{"404", "/missing", http.StatusUnprocessableEntity, CodeFetchFailed},
		{"redirect loop", "/loop", http.StatusUnprocessableEntity, CodeFetchFailed},
	}
	// Fetch holds the body; FetchTo streams it, under the same checks.
	fetchers := map[string]func(f *Fetcher, url string) (Result, error){
		"Fetch": func(f *Fetcher, url string) (Result, error) { return f.Fetch(context.Background(), url) },
		"FetchTo": func(f *Fetcher, url string) (Result, error) {
			var b bytes.Buffer
			r, err := f.FetchTo(context.Background(), url, &b)
			r.Body = b.Bytes()
			return r, err
		},
	}
	for name, fetch := range fetchers {
		for _, c := range cases {
			t.Run(name+"/"+c.name, func(t *testing.T) {
				f, _ := newFetcher(t, srv, Options{Resolver: res, MaxBytes: 2048, Timeout: 300 * time.Millisecond})
				start := time.Now()
				r, err := fetch(f, "http://shop.test"+c.path)
				if el := time.Since(start); el > 2*time.Second {
					t.Fatalf("took %s", el)
				}
				if c.code == "" {
					if err != nil {
						t.Fatalf("Fetch: %v", err)
					}
					if r.ContentType != "image/png" || !bytes.Equal(r.Body, img) || r.Size != int64(len(img)) {
						t.Fatalf("got %s, %d bytes (size %d)", r.ContentType, len(r.Body), r.Size)
					}
					if !strings.HasPrefix(r.FinalURL, "http://shop.test/") {
						t.Fatalf("final url %s", r.FinalURL)
					}
					return
				}
				wantCode(t, err, c.status, c.code)
			})
		}
	}
}

// gate is a writer that says when its first bytes arrived (a plain
// Writer: no ReadFrom for io.Copy to take instead).
type gate struct {
	buf   bytes.Buffer
	first chan struct{}
}

func (g *gate) Write(p []byte) (int, error) {
	if g.buf.Len() == 0 && len(p) > 0 {
		close(g.first)
	}
	return g.buf.Write(p)
}

func (g *gate) Len() int { return g.buf.Len() }

// FetchTo writes the body as it arrives: the server sends the second half
// only once the writer has the first, so a fetcher that held the body
// would wait for the server's fallback; and the size limit cuts a body
// with no length while it streams.
func TestFetchToStreams(t *testing.T) {
	const half = 64 << 10
	released := make(chan bool, 1)
	var w *gate
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.WriteHeader(200)
		rw.Write(bytes.Repeat([]byte("a"), half))
		rw.(http.Flusher).Flush()
		select {
		case <-w.first:
			released <- true
		case <-time.After(10 * time.Second):
			released <- false
		}
		rw.Write(bytes.Repeat([]byte("b"), half))
	}))
	defer srv.Close()
	res := &mapResolver{table: map[string][]string{"shop.test": {publicIP}}}

	w = &gate{first: make(chan struct{})}
	f, _ := newFetcher(t, srv, Options{Resolver: res, AnyContent: true, MaxBytes: 4 * half, Timeout: 30 * time.Second})
	r, err := f.FetchTo(context.Background(), "http://shop.test/catalog.jsonl", w)
	if err != nil || r.Size != 2*half || w.Len() != 2*half || r.Body != nil {
		t.Fatalf("FetchTo: %v, size %d, wrote %d", err, r.Size, w.Len())
	}
	if !<-released {
		t.Fatal("the writer saw no byte before the whole body was sent: the body was held, not streamed")
	}

	w = &gate{first: make(chan struct{})}
	f, _ = newFetcher(t, srv, Options{Resolver: res, AnyContent: true, MaxBytes: half + 100, Timeout: 30 * time.Second})
	_, err = f.FetchTo(context.Background(), "http://shop.test/catalog.jsonl", w)
	wantCode(t, err, http.StatusRequestEntityTooLarge, CodeFetchTooLarge)
	<-released
	if w.Len() > half+101 {
		t.Fatalf("wrote %d bytes past a %d byte limit", w.Len(), half+100)
	}
}

// TestDNSRebinding: the name resolves to a public address once, then to
// loopback. The fetch must dial the address it checked, and resolve once.
func TestDNSRebinding(t *testing.T) {
	img := pngBytes(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(img) }))
	defer srv.Close()
	res := &mapResolver{
		table: map[string][]string{"rebind.test": {publicIP}},
		after: map[string][]string{"rebind.test": {"127.0.0.1"}},
	}
	f, dialed := newFetcher(t, srv, Options{Resolver: res})
	if _, err := f.Fetch(context.Background(), "http://rebind.test/a.png"); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if res.calls["rebind.test"] != 1 {
		t.Fatalf("resolved %d times, want 1", res.calls["rebind.test"])
	}
	if len(*dialed) != 1 || (*dialed)[0] != publicIP+":80" {
		t.Fatalf("dialed %v, want [%s:80]", *dialed, publicIP)
	}
	// The second fetch sees the rebound answer and is refused before dialing.
	_, err := f.Fetch(context.Background(), "http://rebind.test/a.png")
	wantCode(t, err, http.StatusBadRequest, CodeURLNotAllowed)
	if len(*dialed) != 1 {
		t.Fatalf("dialed %v after refusal", *dialed)
	}
}

// TestDialerRefusesBlocked: the real dialer checks the address at connect
// time too, as a second line of defence.
func TestDialerRefusesBlocked(t *testing.T) {
	f := New(Options{})
	_, err := f.dialChecked(context.Background(), "tcp", netip.MustParseAddrPort("127.0.0.1:9"))
	if err == nil || !strings.Contains(err.Error(), "refused by safefetch") {
		t.Fatalf("dial to loopback: %v", err)
	}
}

func TestAllowPrivateForTests(t *testing.T) {
	img := pngBytes(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(img) }))
	defer srv.Close()
	f := New(Options{AllowPrivate: true})
	r, err := f.Fetch(context.Background(), srv.URL+"/x.png")
	if err != nil || r.ContentType != "image/png" {
		t.Fatalf("Fetch: %v %q", err, r.ContentType)
	}
	// Scheme and userinfo checks still apply.
	_, err = f.Fetch(context.Background(), "file:///etc/passwd")
	wantCode(t, err, http.StatusBadRequest, CodeURLNotAllowed)
}

func TestBlocked(t *testing.T) {
	cases := []struct {
		addr    string
		blocked bool
	}{
		{"8.8.8.8", false},
		{"93.184.216.34", false},
		{"2606:4700::1111", false},
		{"::ffff:8.8.8.8", false},
		{"64:ff9b::808:808", false}, // NAT64 of 8.8.8.8
		{"127.0.0.53", true},
		{"169.254.169.254", true},
		{"100.127.255.255", true},
		{"198.18.0.1", true},
		{"::ffff:169.254.169.254", true},
		{"64:ff9b::a00:1", true},
		{"fe80::1", true},
		{"fd00:ec2::254", true},
		{"::", true},
		{"::1", true},
		{"::127.0.0.1", true},
		{"2001:db8::1", true},
	}
	for _, c := range cases {
		if got := Blocked(netip.MustParseAddr(c.addr)); got != c.blocked {
			t.Errorf("Blocked(%s) = %v, want %v", c.addr, got, c.blocked)
		}
	}
}

func TestErrorsAreAPIErrors(t *testing.T) {
	f := New(Options{Resolver: &mapResolver{}})
	_, err := f.Fetch(context.Background(), "http://nowhere.test/")
	var e *apierror.Error
	if !errors.As(err, &e) {
		t.Fatalf("%v is not an apierror", err)
	}
}

func TestAnyContent(t *testing.T) {
	catalog := []byte(`{"sku":"A-1","image":"a.jpg"}` + "\n")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/catalog.jsonl":
			w.Write(catalog)
		case "/to-private":
			http.Redirect(w, r, "http://10.0.0.1/catalog.jsonl", http.StatusFound)
		}
	}))
	defer srv.Close()
	res := &mapResolver{table: map[string][]string{"shop.example": {publicIP}}}
	tests := []struct {
		name       string
		any        bool
		url        string
		wantStatus int
		wantCode   string
	}{
		{"image fetcher refuses a catalog", false, "http://shop.example/catalog.jsonl", http.StatusUnsupportedMediaType, CodeNotImage},
		{"any-content fetcher takes it", true, "http://shop.example/catalog.jsonl", 0, ""},
		{"redirects are still re-checked", true, "http://shop.example/to-private", http.StatusBadRequest, CodeURLNotAllowed},
		{"private addresses still refused", true, "http://127.0.0.1/catalog.jsonl", http.StatusBadRequest, CodeURLNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := newFetcher(t, srv, Options{Resolver: res, AnyContent: tc.any})
			r, err := f.Fetch(context.Background(), tc.url)
			if tc.wantCode == "" {
				if err != nil || string(r.Body) != string(catalog) {
					t.Fatalf("got %q, %v", r.Body, err)
				}
				return
			}
			wantCode(t, err, tc.wantStatus, tc.wantCode)
		})
	}
}
