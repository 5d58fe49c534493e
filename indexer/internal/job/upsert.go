package job

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
)

func (j *Job) upsertStage(ctx context.Context, l *lane, fatal func(error)) {
	for {
		batch, ok := gather(ctx, l.upsertQ, j.cfg.UpsertBatch, j.cfg.Linger)
		if !ok {
			return
		}
		if ctx.Err() != nil {
			continue
		}
		t0 := time.Now()
		points := make([]searchv1.Point, 0, len(batch))
		keep := make([]*row, 0, len(batch))
		for _, r := range batch {
			if l.idx == 0 && j.cfg.NearDuplicateScore > 0 {
				skip, err := j.nearDuplicate(ctx, l, r)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					fatal(fmt.Errorf("search (near-duplicate check): %w", err))
					return
				}
				if skip {
					continue
				}
			}
			points = append(points, searchv1.Point{SKU: r.it.p.SKU, Vector: r.vec, Payload: r.it.p.Payload()})
			keep = append(keep, r)
		}
		if len(points) == 0 {
			continue
		}
		err := j.retry(ctx, func(ctx context.Context) error {
			res, err := l.t.Search.Upsert(ctx, l.t.Catalog, searchv1.UpsertRequest{Model: l.t.Model, Dim: l.dim, Points: points})
			if err == nil && res.Upserted != len(points) {
				return apierror.New(http.StatusBadGateway, CodeServiceResponse, "search upserted %d of %d points", res.Upserted, len(points))
			}
			return err
		})
		if ctx.Err() != nil {
			continue
		}
		if err != nil {
			if transient(err) {
				fatal(fmt.Errorf("upsert: %w", err))
				continue
			}
			if len(keep) > 1 { // a refused batch: upsert one by one to find the culprit
				for _, r := range keep {
					select {
					case <-ctx.Done():
						return
					default:
					}
					one := []searchv1.Point{{SKU: r.it.p.SKU, Vector: r.vec, Payload: r.it.p.Payload()}}
					err := j.retry(ctx, func(ctx context.Context) error {
						_, err := l.t.Search.Upsert(ctx, l.t.Catalog, searchv1.UpsertRequest{Model: l.t.Model, Dim: l.dim, Points: one})
						return err
					})
					if ctx.Err() != nil {
						return
					}
					if err != nil && transient(err) {
						fatal(fmt.Errorf("upsert: %w", err))
						return
					}
					if err != nil {
						j.laneDone(r.it, failEntry("upsert", err), nil)
					} else {
						j.laneDone(r.it, nil, nil)
					}
				}
				continue
			}
			j.laneDone(keep[0].it, failEntry("upsert", err), nil)
			continue
		}
		j.cfg.Observer.Stage("upsert", len(points), time.Since(t0))
		for _, r := range keep {
			j.laneDone(r.it, nil, nil)
		}
	}
}

// nearDuplicate asks search (the duplicates route) whether another SKU in
// the target space scores at least the threshold. skip reports that the
// item was finished as skipped.
func (j *Job) nearDuplicate(ctx context.Context, l *lane, r *row) (skip bool, err error) {
	var res searchv1.DuplicateResponse
	err = j.retry(ctx, func(ctx context.Context) error {
		var err error
		res, err = l.t.Search.Duplicates(ctx, l.t.Catalog, searchv1.DuplicateRequest{Model: l.t.Model, Dim: l.dim, Vector: r.vec,
			MinScore: j.cfg.NearDuplicateScore, ExcludeSKU: r.it.p.SKU, TopK: 1})
		return err
	})
	if err != nil {
		if ae, ok := apierror.As(err); ok && ae.Status == http.StatusNotFound {
			return false, nil // nothing stored yet
		}
		return false, err
	}
	if !res.Duplicate || len(res.Matches) == 0 {
		return false, nil
	}
	h := res.Matches[0]
	if h.SKU == r.it.p.SKU || h.Score < j.cfg.NearDuplicateScore {
		return false, nil
	}
	r.it.mu.Lock()
	flagged := r.it.dupOf != ""
	r.it.mu.Unlock()
	if !flagged && !j.tr.markDuplicate(r.it.p.SKU, h.SKU) {
		return false, nil // h is already reported as a duplicate of this one
	}
	r.it.mu.Lock()
	if r.it.dupOf == "" {
		r.it.dupOf, r.it.dupKind, r.it.dupScr = h.SKU, "near", h.Score
	}
	r.it.mu.Unlock()
	if j.cfg.SkipDuplicates {
		j.laneDone(r.it, nil, &Entry{Code: CodeNearDuplicate, Reason: fmt.Sprintf("near duplicate of SKU %s (score %.4f)", h.SKU, h.Score)})
		return true, nil
	}
	return false, nil
}
