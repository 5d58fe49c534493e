package job

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/lookalike-dev/lookalike/shared/apierror"
)

// gather blocks for one element, then takes up to max-1 more, waiting at
// most linger for them. ok is false when q is closed and empty.
func gather[T any](ctx context.Context, q <-chan T, max int, linger time.Duration) (batch []T, ok bool) {
	select {
	case v, open := <-q:
		if !open {
			return nil, false
		}
		batch = append(batch, v)
	case <-ctx.Done():
		return nil, false
	}
	timer := time.NewTimer(linger)
	defer timer.Stop()
	for len(batch) < max {
		select {
		case v, open := <-q:
			if !open {
				return batch, true
			}
			batch = append(batch, v)
		case <-timer.C:
			return batch, true
		case <-ctx.Done():
			return batch, true
		}
	}
	return batch, true
}

// retry calls fn until it succeeds, fails for good (a 4xx), or the retries
// are spent, backing off exponentially.
func (j *Job) retry(ctx context.Context, fn func(context.Context) error) error {
	wait := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := fn(ctx)
		if err == nil || !transient(err) || attempt >= j.cfg.Retries || ctx.Err() != nil {
			return err
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
		wait = min(2*wait, 2*time.Second)
	}
}

func transient(err error) bool {
	if ae, ok := apierror.As(err); ok {
		return ae.Status >= 500 || ae.Status == http.StatusTooManyRequests || ae.Status == http.StatusRequestTimeout
	}
	return !errors.Is(err, context.Canceled)
}
