// Package upstream is the gateway's client side of one downstream service
// (preprocess, embed or search) with several instances: a wire.Doer that
// balances requests round-robin over the instances whose /readyz answers 200
// (probed in the background), keeps a circuit breaker per instance
// (sony/gobreaker), bounds each attempt with a per-hop timeout under the
// caller's deadline, and retries with jittered backoff on another instance
// only where the request is safe to repeat.
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
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/sony/gobreaker/v2"
)

// HeaderTimeout tells the downstream how many milliseconds the caller will
// wait, so it can give up on work nobody will read.
const HeaderTimeout = "Lookalike-Timeout-Ms"

// Options configure a Pool. Zero fields get the defaults in brackets.
type Options struct {
	// Name of the downstream, used in errors, logs and breaker names.
	Name string
	// URLs are the instances' base URLs.
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
	// BreakerFailures consecutive failures open an instance's breaker (5);
	// it half-opens after BreakerOpen (5 s).
	BreakerFailures uint32
	BreakerOpen     time.Duration
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

// Pool is a balanced, guarded wire.Doer for one downstream.
type Pool struct {
	o         Options
	instances []*instance
	next      atomic.Uint64
	probe     *http.Client
}

// errServerStatus marks a 5xx answer as a failure for the breaker while the
// response itself is still handed back.
var errServerStatus = errors.New("downstream answered 5xx")

// New builds a Pool. Every instance starts ready; Start probes them.
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
	if o.BreakerFailures == 0 {
		o.BreakerFailures = 5
	}
	if o.BreakerOpen <= 0 {
		o.BreakerOpen = 5 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	p := &Pool{o: o, probe: &http.Client{Transport: o.ProbeTransport, Timeout: o.ProbeTimeout}}
	for _, raw := range o.URLs {
		raw = strings.TrimRight(strings.TrimSpace(raw), "/")
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("upstream %s: instance url %q is not an http(s) base url", o.Name, raw)
		}
		in := &instance{base: u}
		in.ready.Store(true)
		name := o.Name + "@" + u.Host
		in.cb = gobreaker.NewCircuitBreaker[*http.Response](gobreaker.Settings{
			Name:        name,
			MaxRequests: 1,
			Timeout:     o.BreakerOpen,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= o.BreakerFailures },
			OnStateChange: func(name string, from, to gobreaker.State) {
				o.Log.Warn("circuit breaker changed state", "downstream", name, "from", from.String(), "to", to.String())
			},
		})
		p.instances = append(p.instances, in)
	}
	return p, nil
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

// States reports every instance.
func (p *Pool) States() []InstanceState {
	out := make([]InstanceState, len(p.instances))
	for i, in := range p.instances {
		out[i] = InstanceState{URL: in.base.String(), Ready: in.ready.Load(), Breaker: in.cb.State().String()}
	}
	return out
}

// Available reports whether some instance is ready with a breaker not open.
func (p *Pool) Available() bool {
	for _, in := range p.instances {
		if in.ready.Load() && in.cb.State() != gobreaker.StateOpen {
			return true
		}
	}
	return false
}

// Start probes every instance now and then every ProbeInterval until ctx ends.
func (p *Pool) Start(ctx context.Context) {
	p.ProbeOnce(ctx)
	go func() {
		t := time.NewTicker(p.o.ProbeInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				p.ProbeOnce(ctx)
			}
		}
	}()
}

// ProbeOnce probes every instance's readiness path concurrently and waits.
func (p *Pool) ProbeOnce(ctx context.Context) {
	done := make(chan struct{}, len(p.instances))
	for _, in := range p.instances {
		go func() {
			defer func() { done <- struct{}{} }()
			ok := p.probeInstance(ctx, in)
			if was := in.ready.Swap(ok); was != ok {
				p.o.Log.Info("downstream instance readiness changed", "downstream", p.o.Name, "instance", in.base.Host, "ready", ok)
			}
		}()
	}
	for range p.instances {
		<-done
	}
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
	n := len(p.instances)
	start := int(p.next.Add(1) % uint64(n))
	var fallback *instance
	for i := range n {
		in := p.instances[(start+i)%n]
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
