// Package safefetch fetches an image from a URL given by an untrusted user
// without letting that user reach internal hosts (SSRF).
//
// Every hop (the first URL and each redirect, at most MaxRedirects) is
// checked the same way: http or https only, no userinfo, no numeric host
// tricks, an optional whole-host allowlist, then the name is resolved and
// every address must be public unicast (see Blocked). The connection is made
// to the address that was checked, never re-resolved, so DNS rebinding has no
// window; the dialer checks the address once more as it connects. Bodies are
// bounded in bytes and time and must sniff as an image.
//
// Refusals are *apierror.Error values with 4xx statuses and the codes
// url_not_allowed, fetch_failed, fetch_too_large and unsupported_media_type.
// Standard library only.
package safefetch

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lookalike-dev/lookalike/shared/apierror"
)

// Error codes.
const (
	CodeURLNotAllowed = "url_not_allowed"
	CodeFetchFailed   = "fetch_failed"
	CodeFetchTooLarge = "fetch_too_large"
	// CodeNotImage (415) is returned when the body does not sniff as an image.
	CodeNotImage = apierror.CodeUnsupportedMedia
)

// Defaults applied to zero Options fields.
const (
	DefaultMaxBytes     = 20 << 20
	DefaultTimeout      = 10 * time.Second
	DefaultMaxRedirects = 3
)

// Resolver resolves host names; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Options configure a Fetcher.
type Options struct {
	// MaxBytes bounds the body (default 20 MiB).
	MaxBytes int64
	// Timeout bounds the whole fetch, redirects included (default 10 s).
	Timeout time.Duration
	// MaxRedirects bounds the redirects followed (0: default 3; negative: none).
	MaxRedirects int
	// AllowHosts, when not empty, lists the only host names that may be
	// fetched (whole names, case-insensitive, never prefixes or suffixes).
	AllowHosts []string
	// Resolver resolves names (nil: net.DefaultResolver).
	Resolver Resolver
	// AllowPrivate turns the address checks off. For tests against loopback only.
	AllowPrivate bool
	// UserAgent is sent with every request (default "lookalike-safefetch/1").
	UserAgent string
	// AnyContent accepts bodies that are not images (a catalog file, say);
	// every address, redirect and size check still applies.
	AnyContent bool
}

// Result is a fetched image.
type Result struct {
	Body []byte
	// ContentType is the sniffed type (http.DetectContentType), e.g. image/png.
	ContentType string
	// FinalURL is the URL the body came from, after redirects.
	FinalURL string
	// Size is the body's length in bytes.
	Size int64
}

// Fetcher fetches images safely. It is safe for concurrent use.
type Fetcher struct {
	opts  Options
	allow map[string]bool
	// dial connects to the checked address; tests replace it to reach a
	// local server posing as a public one.
	dial func(ctx context.Context, network string, addr netip.AddrPort) (net.Conn, error)
}

// New returns a Fetcher with opts, defaults filled in.
func New(opts Options) *Fetcher {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxRedirects == 0 {
		opts.MaxRedirects = DefaultMaxRedirects
	} else if opts.MaxRedirects < 0 {
		opts.MaxRedirects = 0
	}
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "lookalike-safefetch/1"
	}
	f := &Fetcher{opts: opts}
	if len(opts.AllowHosts) > 0 {
		f.allow = make(map[string]bool, len(opts.AllowHosts))
		for _, h := range opts.AllowHosts {
			f.allow[normHost(h)] = true
		}
	}
	f.dial = f.dialChecked
	return f
}

func normHost(h string) string { return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".") }

func notAllowed(format string, args ...any) *apierror.Error {
	return apierror.BadRequest(CodeURLNotAllowed, format, args...)
}

func fetchFailed(cause error, format string, args ...any) *apierror.Error {
	return apierror.Wrap(cause, http.StatusUnprocessableEntity, CodeFetchFailed, format, args...)
}

// target is one checked hop: the URL and the address to dial.
type target struct {
	u    *url.URL
	addr netip.AddrPort
}

// Check parses and checks rawURL without fetching it: scheme, userinfo,
// host form, allowlist, and (resolving the name) the addresses.
func (f *Fetcher) Check(ctx context.Context, rawURL string) error {
	u, err := f.parse(rawURL)
	if err != nil {
		return err
	}
	_, err = f.resolve(ctx, u)
	return err
}

func (f *Fetcher) parse(rawURL string) (*url.URL, error) {
	if len(rawURL) > 4096 {
		return nil, notAllowed("url is longer than 4096 bytes")
	}
	if strings.ContainsAny(rawURL, "\\\x00\r\n\t") {
		return nil, notAllowed("url contains a backslash or control character")
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, notAllowed("url does not parse")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, notAllowed("only http and https urls may be fetched")
	}
	if u.User != nil || strings.Contains(u.Host, "@") {
		return nil, notAllowed("urls with user info are not allowed")
	}
	host := u.Hostname()
	if host == "" {
		return nil, notAllowed("url has no host")
	}
	if strings.Contains(host, "%") {
		return nil, notAllowed("ipv6 zones are not allowed")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, notAllowed("url port is not valid")
		}
	}
	if _, err := netip.ParseAddr(host); err != nil {
		// A name: refuse IPv4 written in forms netip does not accept
		// (decimal, octal, hex, short), which resolvers may still honour.
		if numericHost(host) {
			return nil, notAllowed("host %q is a non-canonical IP address", host)
		}
		n := normHost(host)
		if n == "localhost" || strings.HasSuffix(n, ".localhost") {
			return nil, notAllowed("localhost may not be fetched")
		}
	}
	if f.allow != nil && !f.allow[normHost(host)] {
		return nil, notAllowed("host %q is not on the allowlist", host)
	}
	return u, nil
}

// resolve picks the address to dial for u, refusing the hop when any of the
// name's addresses is blocked.
func (f *Fetcher) resolve(ctx context.Context, u *url.URL) (netip.AddrPort, error) {
	port := uint16(80)
	if u.Scheme == "https" {
		port = 443
	}
	if p := u.Port(); p != "" {
		n, _ := strconv.Atoi(p)
		port = uint16(n)
	}
	host := u.Hostname()
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		addrs, err = f.opts.Resolver.LookupNetIP(ctx, "ip", normHost(host))
		if err != nil {
			return netip.AddrPort{}, fetchFailed(err, "host %q does not resolve", host)
		}
		if len(addrs) == 0 {
			return netip.AddrPort{}, fetchFailed(nil, "host %q has no addresses", host)
		}
	}
	if !f.opts.AllowPrivate {
		for _, a := range addrs {
			if Blocked(a) {
				return netip.AddrPort{}, notAllowed("host %q resolves to a disallowed address", host)
			}
		}
	}
	return netip.AddrPortFrom(addrs[0].Unmap(), port), nil
}

// dialChecked connects to addr, checking it once more at connect time.
func (f *Fetcher) dialChecked(ctx context.Context, network string, addr netip.AddrPort) (net.Conn, error) {
	d := net.Dialer{Timeout: f.opts.Timeout}
	if !f.opts.AllowPrivate {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || Blocked(ap.Addr()) {
				return fmt.Errorf("connect to %s refused by safefetch", address)
			}
			return nil
		}
	}
	return d.DialContext(ctx, network, addr.String())
}

// client builds a one-hop client that dials only t.addr, whatever the URL says.
func (f *Fetcher) client(t target) *http.Client {
	tr := &http.Transport{
		Proxy: nil, // never an environment proxy: it would do the resolving
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return f.dial(ctx, network, t.addr)
		},
		TLSHandshakeTimeout:   f.opts.Timeout,
		ResponseHeaderTimeout: f.opts.Timeout,
		MaxIdleConns:          1,
		DisableKeepAlives:     true,
		DisableCompression:    false,
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // redirects are followed (and checked) by Fetch
		},
	}
}

// Fetch gets rawURL and returns the image body. See the package comment for
// what is refused.
func (f *Fetcher) Fetch(ctx context.Context, rawURL string) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, f.opts.Timeout)
	defer cancel()
	u, resp, err := f.open(ctx, rawURL)
	if err != nil {
		return Result{}, err
	}
	defer resp.Body.Close()
	return f.read(ctx, u, resp)
}

// FetchTo is Fetch writing the body to w as it arrives instead of holding
// it (a catalog of a gigabyte, say): the same checks apply, the size limit
// while streaming. On an error w may hold part of the body. The Result has
// no Body; Size is the bytes written.
func (f *Fetcher) FetchTo(ctx context.Context, rawURL string, w io.Writer) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, f.opts.Timeout)
	defer cancel()
	u, resp, err := f.open(ctx, rawURL)
	if err != nil {
		return Result{}, err
	}
	defer resp.Body.Close()
	if err := f.checkResponse(u, resp); err != nil {
		return Result{}, err
	}
	br := bufio.NewReaderSize(resp.Body, 512)
	head, _ := br.Peek(512)
	ct := http.DetectContentType(head)
	if !f.opts.AnyContent && !strings.HasPrefix(ct, "image/") {
		return Result{}, apierror.New(http.StatusUnsupportedMediaType, CodeNotImage,
			"url does not hold an image (sniffed %s)", ct)
	}
	n, err := io.Copy(w, io.LimitReader(br, f.opts.MaxBytes+1))
	if n > f.opts.MaxBytes {
		return Result{}, apierror.New(http.StatusRequestEntityTooLarge, CodeFetchTooLarge,
			"body at url is over the %d byte limit", f.opts.MaxBytes)
	}
	if err != nil {
		return Result{}, f.ctxErr(ctx, fetchFailed(err, "reading %s failed", u.Redacted()))
	}
	return Result{ContentType: ct, FinalURL: u.String(), Size: n}, nil
}

// open follows rawURL's redirects, each checked, to the response that is
// not one.
func (f *Fetcher) open(ctx context.Context, rawURL string) (*url.URL, *http.Response, error) {
	u, err := f.parse(rawURL)
	if err != nil {
		return nil, nil, err
	}
	for hop := 0; ; hop++ {
		addr, err := f.resolve(ctx, u)
		if err != nil {
			return nil, nil, f.ctxErr(ctx, err)
		}
		resp, err := f.get(ctx, target{u: u, addr: addr})
		if err != nil {
			return nil, nil, f.ctxErr(ctx, err)
		}
		if !isRedirect(resp.StatusCode) {
			return u, resp, nil
		}
		loc := resp.Header.Get("Location")
		resp.Body.Close()
		if hop >= f.opts.MaxRedirects {
			return nil, nil, fetchFailed(nil, "more than %d redirects", f.opts.MaxRedirects)
		}
		next, err := u.Parse(loc)
		if err != nil || loc == "" {
			return nil, nil, fetchFailed(err, "redirect without a usable location")
		}
		if u, err = f.parse(next.String()); err != nil {
			return nil, nil, err
		}
	}
}

func isRedirect(code int) bool {
	switch code {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

func (f *Fetcher) get(ctx context.Context, t target) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.u.String(), nil)
	if err != nil {
		return nil, notAllowed("url is not a valid request target")
	}
	req.Header.Set("User-Agent", f.opts.UserAgent)
	if f.opts.AnyContent {
		req.Header.Set("Accept", "*/*")
	} else {
		req.Header.Set("Accept", "image/*")
	}
	resp, err := f.client(t).Do(req)
	if err != nil {
		return nil, fetchFailed(err, "fetching %s failed", t.u.Redacted())
	}
	return resp, nil
}

func (f *Fetcher) checkResponse(u *url.URL, resp *http.Response) error {
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fetchFailed(nil, "fetching %s answered %d", u.Redacted(), resp.StatusCode)
	}
	if resp.ContentLength > f.opts.MaxBytes {
		return apierror.New(http.StatusRequestEntityTooLarge, CodeFetchTooLarge,
			"body at url is %d bytes, over the %d byte limit", resp.ContentLength, f.opts.MaxBytes)
	}
	return nil
}

func (f *Fetcher) read(ctx context.Context, u *url.URL, resp *http.Response) (Result, error) {
	if err := f.checkResponse(u, resp); err != nil {
		return Result{}, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.opts.MaxBytes+1))
	if err != nil {
		return Result{}, f.ctxErr(ctx, fetchFailed(err, "reading %s failed", u.Redacted()))
	}
	if int64(len(body)) > f.opts.MaxBytes {
		return Result{}, apierror.New(http.StatusRequestEntityTooLarge, CodeFetchTooLarge,
			"image at url is over the %d byte limit", f.opts.MaxBytes)
	}
	ct := http.DetectContentType(body)
	if !f.opts.AnyContent && !strings.HasPrefix(ct, "image/") {
		return Result{}, apierror.New(http.StatusUnsupportedMediaType, CodeNotImage,
			"url does not hold an image (sniffed %s)", ct)
	}
	return Result{Body: body, ContentType: ct, FinalURL: u.String(), Size: int64(len(body))}, nil
}

// ctxErr reports a timeout as such.
func (f *Fetcher) ctxErr(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fetchFailed(err, "fetch took longer than %s", f.opts.Timeout)
	}
	return err
}
