package job

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/lookalike-dev/lookalike/shared/catalog"
)

type loader struct {
	root    *os.Root
	base    *url.URL
	lim     *hostLimiter
	fetcher ImageFetcher
	max     int64
}

func (j *Job) newLoader(lim *hostLimiter) (*loader, error) {
	ld := &loader{lim: lim, fetcher: j.cfg.Fetcher, max: j.cfg.MaxImageBytes}
	if j.cfg.CatalogURL != "" {
		u, err := url.Parse(j.cfg.CatalogURL)
		if err != nil {
			return nil, fmt.Errorf("parsing catalog URL: %w", err)
		}
		ld.base = u
		return ld, nil
	}
	if j.cfg.NoLocalImages {
		return ld, nil
	}
	dir := j.catalogDir()
	if j.cfg.ImageRoot != "" {
		dir = j.cfg.ImageRoot
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("opening catalog folder: %w", err)
	}
	ld.root = root
	return ld, nil
}

func (ld *loader) close() {
	if ld.root != nil {
		ld.root.Close()
	}
}

func (ld *loader) load(ctx context.Context, p catalog.Product) ([]byte, *Entry) {
	ref := p.Image
	if !p.IsURL() && ld.base != nil {
		u, err := ld.base.Parse(ref)
		if err != nil {
			return nil, &Entry{Stage: "fetch", Code: CodeImagePath, Reason: fmt.Sprintf("image %q does not resolve against the catalog URL", ref)}
		}
		ref = u.String()
	}
	if strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://") || strings.HasPrefix(strings.ToLower(ref), "http") {
		if ld.fetcher == nil {
			return nil, &Entry{Stage: "fetch", Code: CodeFetchDisabled, Reason: "this job fetches no URLs"}
		}
		u, err := url.Parse(ref)
		if err != nil {
			return nil, &Entry{Stage: "fetch", Code: "url_not_allowed", Reason: "image URL does not parse"}
		}
		if err := ld.lim.wait(ctx, strings.ToLower(u.Host)); err != nil {
			return nil, nil // canceled
		}
		res, err := ld.fetcher.Fetch(ctx, ref)
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil
			}
			return nil, failEntry("fetch", err)
		}
		return res.Body, nil
	}
	if ld.root == nil {
		return nil, &Entry{Stage: "fetch", Code: CodeImagePath, Reason: "local image paths are off for this job (use URLs)"}
	}
	f, err := ld.root.Open(filepath.FromSlash(ref))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, &Entry{Stage: "fetch", Code: CodeImageNotFound, Reason: fmt.Sprintf("no image file %q", ref)}
	case err != nil && (filepath.IsAbs(ref) || strings.Contains(err.Error(), "escapes")):
		return nil, &Entry{Stage: "fetch", Code: CodeImagePath, Reason: fmt.Sprintf("image path %q leaves the catalog folder", ref)}
	case err != nil:
		return nil, &Entry{Stage: "fetch", Code: CodeImageRead, Reason: err.Error()}
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && !st.Mode().IsRegular() {
		return nil, &Entry{Stage: "fetch", Code: CodeImageRead, Reason: fmt.Sprintf("%q is not a regular file", ref)}
	}
	b, err := io.ReadAll(io.LimitReader(f, ld.max+1))
	if err != nil {
		return nil, &Entry{Stage: "fetch", Code: CodeImageRead, Reason: err.Error()}
	}
	if int64(len(b)) > ld.max {
		return nil, &Entry{Stage: "fetch", Code: CodeImageTooLarge, Reason: fmt.Sprintf("image is over %d bytes", ld.max)}
	}
	return b, nil
}

func (j *Job) fetchStage(ctx context.Context, in <-chan *item, lanes []*lane, ld *loader) {
	for it := range in {
		if ctx.Err() != nil {
			continue // drain; the items stay in flight for the next run
		}
		t0 := time.Now()
		img, fail := ld.load(ctx, it.p)
		if ctx.Err() != nil {
			continue
		}
		j.cfg.Observer.Stage("fetch", 1, time.Since(t0))
		if fail != nil {
			it.pending.Store(1)
			j.laneDone(it, fail, nil)
			continue
		}
		it.img = img
		it.pending.Store(int32(len(lanes)))
		for _, l := range lanes {
			select {
			case l.prepQ <- it:
			case <-ctx.Done():
			}
		}
	}
}

// hostLimiter is a token bucket per origin host.
type hostLimiter struct {
	mu    sync.Mutex
	r     rate.Limit
	burst int
	m     map[string]*rate.Limiter
}

func newHostLimiter(perSec float64, burst int) *hostLimiter {
	return &hostLimiter{r: rate.Limit(perSec), burst: burst, m: map[string]*rate.Limiter{}}
}

func (h *hostLimiter) wait(ctx context.Context, host string) error {
	h.mu.Lock()
	l, ok := h.m[host]
	if !ok {
		l = rate.NewLimiter(h.r, h.burst)
		h.m[host] = l
	}
	h.mu.Unlock()
	return l.Wait(ctx)
}
