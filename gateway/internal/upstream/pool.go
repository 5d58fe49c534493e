// Package upstream is the gateway's client side of one downstream service
// (preprocess, embed or search) with several instances: a wire.Doer that
// balances requests round-robin over the instances whose /readyz answers 200
// (probed in the background), keeps a circuit breaker per instance
// (sony/gobreaker), bounds each attempt with a per-hop timeout under the
// caller's deadline, and retries with jittered backoff on another instance
// only where the request is safe to repeat.
//
// Instances are static base URLs or, with a "dns+" or "dnssrv+" prefix, the
// pods behind a headless Service, found from its A/AAAA or SRV records and
// re-resolved periodically, so balancing, probes and breakers are per pod.
//
// A breaker opens on the ratio of failed calls over a sliding window once a
// minimum number of calls was seen. A call the caller itself abandons (its
// cancellation or its deadline) is neither a success nor a failure: no
// client can open a breaker that every other client shares.
//
// When no instance can take a request the Doer fails at once with a 503
// "unavailable" *apierror.Error, never a hang.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/sony/gobreaker/v2"
)

// HeaderTimeout tells the downstream how many milliseconds the caller will
// wait, so it can give up on work nobody will read.
const HeaderTimeout = "Lookalike-Timeout-Ms"

// URL prefixes that name a headless Service whose records list the pods.
const (
	// PrefixDNS resolves the host's A/AAAA records; the URL's port is used
	// for every address ("dns+http://preprocess-pods:8081").
	PrefixDNS = "dns+"
	// PrefixDNSSRV resolves the host as an SRV name; each record gives a
	// target and port ("dnssrv+http://_http._tcp.preprocess-pods").
	PrefixDNSSRV = "dnssrv+"
)

// Resolver looks up a headless Service's records (*net.Resolver).
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
}

// Options configure a Pool. Zero fields get the defaults in brackets.
type Options struct {
	// Name of the downstream, used in errors, logs and breaker names.
	Name string
	// URLs are the instances' base URLs, or headless Services to resolve
	// (PrefixDNS, PrefixDNSSRV).
	URLs []string
	// Transport sends the requests (traced; http.DefaultTransport).
	Transport http.RoundTripper
	// ProbeTransport sends readiness probes (http.DefaultTransport).
	ProbeTransport http.RoundTripper
	// AttemptTimeout bounds one attempt (5 s). The caller's deadline still wins.
	AttemptTimeout time.Duration
	// Retries is the number of extra attempts for retryable requests (2);
	// negative means none.
	Retries int
	// BackoffBase and BackoffMax shape the full-jitter backoff (20 ms, 250 ms).
	BackoffBase, BackoffMax time.Duration
	// Retryable says whether a request may be sent twice (IdempotentMethods).
	Retryable func(*http.Request) bool
	// ProbePath is the readiness path ("/readyz"), ProbeInterval how often it
	// is probed (2 s) and ProbeTimeout how long a probe may take (1 s).
	ProbePath     string
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	// An instance's breaker opens when at least BreakerFailureRatio (0.5) of
	// its calls in the last BreakerWindow (10 s) failed, once it has seen
	// BreakerMinCalls (10) calls in that window; it half-opens after
	// BreakerOpen (5 s).
	BreakerMinCalls     uint32
	BreakerFailureRatio float64
	BreakerWindow       time.Duration
	BreakerOpen         time.Duration
	// Resolver finds the pods of dns+ and dnssrv+ URLs (net.DefaultResolver),
	// every ResolveInterval (5 s).
	Resolver        Resolver
	ResolveInterval time.Duration
	// Log receives state changes (slog.Default()).
	Log *slog.Logger
}

// IdempotentMethods retries GET, HEAD, OPTIONS, PUT and DELETE.
func IdempotentMethods(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// AllRequests retries everything: for downstreams whose every call is a
// pure function or an idempotent upsert (preprocess, embed, search).
func AllRequests(*http.Request) bool { return true }

type instance struct {
	base  *url.URL
	ready atomic.Bool
	cb    *gobreaker.CircuitBreaker[*http.Response]
}

// target is one configured URL: a static instance or a headless Service.
type target struct {
	raw  string
	kind string // "", PrefixDNS or PrefixDNSSRV
	base *url.URL
}

// Pool is a balanced, guarded wire.Doer for one downstream.
type Pool struct {
	o         Options
	targets   []target
	instances atomic.Pointer[[]*instance]
	next      atomic.Uint64
	probe     *http.Client
	// resolveMu serialises re-resolution, which replaces instances;
	// resolved holds each target's last instances.
	resolveMu sync.Mutex
	resolved  [][]*instance
}

var (
	// errServerStatus marks a 5xx answer as a failure for the breaker while
	// the response itself is still handed back.
	errServerStatus = errors.New("downstream answered 5xx")
	// errCallerGone marks an attempt the caller abandoned (cancelled, or
	// its own deadline passed): the breaker leaves it out of its counts.
	errCallerGone = errors.New("caller gave up")
)

// New builds a Pool. Every static instance starts ready; Start probes them
// and resolves headless Services.
func New(o Options) (*Pool, error) {
	if o.Name == "" {
		return nil, errors.New("upstream: name is empty")
	}
	if len(o.URLs) == 0 {
		return nil, fmt.Errorf("upstream %s: no instance urls", o.Name)
	}
	if o.Transport == nil {
		o.Transport = http.DefaultTransport
	}
	if o.ProbeTransport == nil {
		o.ProbeTransport = http.DefaultTransport
	}
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = 5 * time.Second
	}
	if o.Retries == 0 {
		o.Retries = 2
	} else if o.Retries < 0 {
		o.Retries = 0
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = 20 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 250 * time.Millisecond
	}
	if o.Retryable == nil {
		o.Retryable = IdempotentMethods
	}
	if o.ProbePath == "" {
		o.ProbePath = "/readyz"
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = 2 * time.Second
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = time.Second
	}
	if o.BreakerMinCalls == 0 {
		o.BreakerMinCalls = 10
	}
	if o.BreakerFailureRatio <= 0 || o.BreakerFailureRatio > 1 {
		o.BreakerFailureRatio = 0.5
	}
	if o.BreakerWindow <= 0 {
		o.BreakerWindow = 10 * time.Second
	}
	if o.BreakerOpen <= 0 {
		o.BreakerOpen = 5 * time.Second
	}
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	if o.ResolveInterval <= 0 {
		o.ResolveInterval = 5 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	p := &Pool{o: o, probe: &http.Client{Transport: o.ProbeTransport, Timeout: o.ProbeTimeout}}
	var static []*instance
	for _, raw := range o.URLs {
		t, err := parseTarget(raw)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", o.Name, err)
		}
		p.targets = append(p.targets, t)
		if t.kind == "" {
			in := p.newInstance(t.base)
			in.ready.Store(true)
			static = append(static, in)
		}
	}
	p.instances.Store(&static)
	return p, nil
}

func parseTarget(raw string) (target, error) {
	raw = strings.TrimRight(strings.TrimSpace(raw), "/")
	t := target{raw: raw}
	rest := raw
	for _, k := range []string{PrefixDNSSRV, PrefixDNS} {
		if after, ok := strings.CutPrefix(raw, k); ok {
			t.kind, rest = k, after
			break
		}
	}
	u, err := url.Parse(rest)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return t, fmt.Errorf("instance url %q is not an http(s) base url (optionally prefixed %s or %s)", raw, PrefixDNS, PrefixDNSSRV)
	}
	if t.kind == PrefixDNS && u.Port() == "" {
		return t, fmt.Errorf("instance url %q names no port for its addresses", raw)
	}
	t.base = u
	return t, nil
}

func (p *Pool) newInstance(base *url.URL) *instance {
	in := &instance{base: base}
	o := p.o
	// A rolling window of one-second buckets: old failures age out
	// gradually instead of all at once.
	bucket := min(time.Second, o.BreakerWindow)
	in.cb = gobreaker.NewCircuitBreaker[*http.Response](gobreaker.Settings{
		Name:         o.Name + "@" + base.Host,
		MaxRequests:  1,
		Interval:     o.BreakerWindow,
		BucketPeriod: bucket,
		Timeout:      o.BreakerOpen,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			// Requests also counts calls in flight and excluded ones.
			decided := c.TotalSuccesses + c.TotalFailures
			return decided >= o.BreakerMinCalls && float64(c.TotalFailures) >= o.BreakerFailureRatio*float64(decided)
		},
		IsExcluded: func(err error) bool { return errors.Is(err, errCallerGone) },
		OnStateChange: func(name string, from, to gobreaker.State) {
			o.Log.Warn("circuit breaker changed state", "downstream", name, "from", from.String(), "to", to.String())
		},
	})
	return in
}

// SplitURLs splits a comma-separated list of base URLs.
func SplitURLs(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// BaseURL is the logical base URL to give a contract client using this Pool
// as its Doer; the Pool replaces scheme and host with a chosen instance's.
func (p *Pool) BaseURL() string { return "http://" + p.o.Name + ".upstream" }

// Name is the downstream's name.
func (p *Pool) Name() string { return p.o.Name }

// InstanceState is one instance's view for status pages and tests.
type InstanceState struct {
	URL     string `json:"url"`
	Ready   bool   `json:"ready"`
	Breaker string `json:"breaker"`
}

func (p *Pool) list() []*instance { return *p.instances.Load() }

// States reports every instance.
func (p *Pool) States() []InstanceState {
	ins := p.list()
	out := make([]InstanceState, len(ins))
	for i, in := range ins {
		out[i] = InstanceState{URL: in.base.String(), Ready: in.ready.Load(), Breaker: in.cb.State().String()}
	}
	return out
}

// Available reports whether some instance is ready with a breaker not open.
func (p *Pool) Available() bool {
	for _, in := range p.list() {
		if in.ready.Load() && in.cb.State() != gobreaker.StateOpen {
			return true
		}
	}
	return false
}

func (p *Pool) dynamic() bool {
	for _, t := range p.targets {
		if t.kind != "" {
			return true
		}
	}
	return false
}

// Start resolves headless Services and probes every instance now, then
// probes every ProbeInterval and re-resolves every ResolveInterval until
// ctx ends.
func (p *Pool) Start(ctx context.Context) {
	if p.dynamic() {
		p.ResolveOnce(ctx)
	}
	p.ProbeOnce(ctx)
	go every(ctx, p.o.ProbeInterval, p.ProbeOnce)
	if p.dynamic() {
		go every(ctx, p.o.ResolveInterval, p.ResolveOnce)
	}
}

// every runs fn each period until ctx ends.
func every(ctx context.Context, period time.Duration, fn func(context.Context)) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn(ctx)
		}
	}
}

// ResolveOnce looks up every headless Service and replaces the instance
// list: instances still listed keep their readiness and breaker, new ones
// join once their first probe answered. A lookup that fails or finds
// nothing keeps that Service's previous instances (a DNS hiccup must not
// empty the pool; their probes decide whether they serve).
func (p *Pool) ResolveOnce(ctx context.Context) {
	p.resolveMu.Lock()
	defer p.resolveMu.Unlock()
	if p.resolved == nil {
		p.resolved = make([][]*instance, len(p.targets))
	}
	old := map[string]*instance{}
	for _, in := range p.list() {
		old[in.base.String()] = in
	}
	var next, fresh []*instance
	seen := map[string]bool{}
	for i, t := range p.targets {
		var mine []*instance
		switch bases, err := p.lookup(ctx, t); {
		case t.kind == "":
			mine = []*instance{old[t.base.String()]}
		case err != nil || len(bases) == 0:
			if err == nil {
				err = errors.New("no records")
			}
			p.o.Log.Warn("resolving downstream instances failed; keeping the last ones", "downstream", p.o.Name,
				"target", t.raw, "err", err, "kept", len(p.resolved[i]))
			mine = p.resolved[i]
		default:
			for _, b := range bases {
				in, ok := old[b.String()]
				if !ok {
					in = p.newInstance(b)
					old[b.String()] = in
					fresh = append(fresh, in)
				}
				mine = append(mine, in)
			}
		}
		p.resolved[i] = mine
		for _, in := range mine {
			if k := in.base.String(); !seen[k] {
				seen[k] = true
				next = append(next, in)
			}
		}
	}
	p.probeAll(ctx, fresh)
	if len(fresh) > 0 || len(next) != len(p.list()) {
		hosts := make([]string, len(next))
		for i, in := range next {
			hosts[i] = in.base.Host
		}
		p.o.Log.Info("downstream instances resolved", "downstream", p.o.Name, "instances", hosts)
	}
	p.instances.Store(&next)
}

func (p *Pool) lookup(ctx context.Context, t target) ([]*url.URL, error) {
	ctx, cancel := context.WithTimeout(ctx, p.o.ProbeTimeout)
	defer cancel()
	mk := func(host string) *url.URL {
		u := *t.base
		u.Host = host
		return &u
	}
	var out []*url.URL
	switch t.kind {
	case "":
		return nil, nil
	case PrefixDNS:
		addrs, err := p.o.Resolver.LookupIPAddr(ctx, t.base.Hostname())
		if err != nil {
			return nil, fmt.Errorf("looking up %s: %w", t.base.Hostname(), err)
		}
		for _, a := range addrs {
			out = append(out, mk(net.JoinHostPort(a.IP.String(), t.base.Port())))
		}
	case PrefixDNSSRV:
		_, srvs, err := p.o.Resolver.LookupSRV(ctx, "", "", t.base.Hostname())
		if err != nil {
			return nil, fmt.Errorf("looking up SRV %s: %w", t.base.Hostname(), err)
		}
		for _, s := range srvs {
			out = append(out, mk(net.JoinHostPort(strings.TrimSuffix(s.Target, "."), strconv.Itoa(int(s.Port)))))
		}
	}
	slices.SortFunc(out, func(a, b *url.URL) int { return strings.Compare(a.Host, b.Host) })
	return out, nil
}

// ProbeOnce probes every instance's readiness path concurrently and waits.
func (p *Pool) ProbeOnce(ctx context.Context) { p.probeAll(ctx, p.list()) }

func (p *Pool) probeAll(ctx context.Context, ins []*instance) {
	var wg sync.WaitGroup
	for _, in := range ins {
		wg.Go(func() {
			ok := p.probeInstance(ctx, in)
			if was := in.ready.Swap(ok); was != ok {
				p.o.Log.Info("downstream instance readiness changed", "downstream", p.o.Name, "instance", in.base.Host, "ready", ok)
			}
		})
	}
	wg.Wait()
}

func (p *Pool) probeInstance(ctx context.Context, in *instance) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.base.String()+p.o.ProbePath, nil)
	if err != nil {
		return false
	}
	resp, err := p.probe.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// pick returns the next ready instance with a breaker that is not open,
// preferring ones not yet tried by this request.
func (p *Pool) pick(tried map[*instance]bool) *instance {
	ins := p.list()
	n := len(ins)
	if n == 0 {
		return nil
	}
	start := int(p.next.Add(1) % uint64(n))
	var fallback *instance
	for i := range n {
		in := ins[(start+i)%n]
		if !in.ready.Load() || in.cb.State() == gobreaker.StateOpen {
			continue
		}
		if !tried[in] {
			return in
		}
		if fallback == nil {
			fallback = in
		}
	}
	return fallback
}

func (p *Pool) unavailable(cause error) *apierror.Error {
	return apierror.Wrap(cause, http.StatusServiceUnavailable, apierror.CodeUnavailable,
		"%s is unavailable", p.o.Name).WithRetryAfter(1)
}

// Do sends req to one instance, retrying on another where that is safe.
func (p *Pool) Do(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	retryable := p.o.Retryable(req) && (req.Body == nil || req.Body == http.NoBody || req.GetBody != nil)
	attempts := 1
	if retryable {
		attempts += p.o.Retries
	}
	tried := map[*instance]bool{}
	var lastErr error
	for a := range attempts {
		if a > 0 {
			if err := p.backoff(ctx, a); err != nil {
				break
			}
		}
		in := p.pick(tried)
		if in == nil {
			if lastErr == nil {
				lastErr = errors.New("no ready instance")
			}
			return nil, p.unavailable(lastErr)
		}
		tried[in] = true
		resp, err := p.attempt(req, in, a)
		if err == nil {
			if retryable && a < attempts-1 && retryStatus(resp.StatusCode) {
				lastErr = fmt.Errorf("%s answered %d", in.base.Host, resp.StatusCode)
				drain(resp)
				continue
			}
			return resp, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
		if !retryable {
			break
		}
	}
	return nil, p.failure(ctx, lastErr)
}

// failure maps the last error of a request to an API error.
func (p *Pool) failure(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return apierror.Wrap(err, http.StatusGatewayTimeout, apierror.CodeDeadlineExceeded,
				"%s did not answer within the request deadline", p.o.Name)
		}
		return ctx.Err()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return apierror.Wrap(err, http.StatusGatewayTimeout, apierror.CodeDeadlineExceeded,
			"%s did not answer within %s", p.o.Name, p.o.AttemptTimeout)
	}
	return p.unavailable(err)
}

func retryStatus(code int) bool {
	return code == http.StatusBadGateway || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

func (p *Pool) backoff(ctx context.Context, attempt int) error {
	ceil := p.o.BackoffBase << (attempt - 1)
	if ceil > p.o.BackoffMax || ceil <= 0 {
		ceil = p.o.BackoffMax
	}
	d := time.Duration(rand.Int64N(int64(ceil) + 1))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// attempt sends one try to in through its breaker. A returned response's
// body keeps the attempt's context alive until it is closed.
func (p *Pool) attempt(req *http.Request, in *instance, n int) (*http.Response, error) {
	actx, cancel := context.WithTimeout(req.Context(), p.o.AttemptTimeout)
	areq := req.Clone(actx)
	u := *req.URL
	u.Scheme, u.Host = in.base.Scheme, in.base.Host
	u.Path = in.base.Path + req.URL.Path
	if req.URL.RawPath != "" {
		u.RawPath = in.base.Path + req.URL.RawPath
	}
	areq.URL, areq.Host = &u, ""
	if n > 0 && req.GetBody != nil {
		b, err := req.GetBody()
		if err != nil {
			cancel()
			return nil, fmt.Errorf("rewinding request body: %w", err)
		}
		areq.Body = b
	}
	if dl, ok := actx.Deadline(); ok {
		areq.Header.Set(HeaderTimeout, strconv.FormatInt(max(time.Until(dl).Milliseconds(), 1), 10))
	}
	resp, err := in.cb.Execute(func() (*http.Response, error) {
		resp, err := p.o.Transport.RoundTrip(areq)
		if err != nil {
			if req.Context().Err() != nil {
				// The caller cancelled or its own deadline passed: says
				// nothing about this instance.
				return nil, fmt.Errorf("%w: %w", errCallerGone, err)
			}
			return nil, err
		}
		if resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented {
			return resp, errServerStatus
		}
		return resp, nil
	})
	if errors.Is(err, errServerStatus) {
		err = nil
	}
	if err != nil {
		cancel()
		if resp != nil {
			drain(resp)
		}
		if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
			return nil, fmt.Errorf("%s@%s: %w", p.o.Name, in.base.Host, err)
		}
		if isConnRefused(err) {
			// Passive ejection: the next probe brings it back.
			in.ready.Store(false)
		}
		return nil, fmt.Errorf("%s@%s: %w", p.o.Name, in.base.Host, err)
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

func isConnRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
