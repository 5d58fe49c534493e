package job

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"
)

func (j *Job) preprocessStage(ctx context.Context, l *lane, fatal func(error)) {
	for {
		batch, ok := gather(ctx, l.prepQ, j.cfg.PreprocessBatch, j.cfg.Linger)
		if !ok {
			return
		}
		if ctx.Err() != nil {
			continue
		}
		j.preprocess(ctx, l, batch, fatal, 0)
	}
}

// preprocess sends one batch. Items the service refuses for good (4xx)
// fail; items it could not do for now (5xx, 429 per item) are sent again,
// attempt counting the tries.
func (j *Job) preprocess(ctx context.Context, l *lane, batch []*item, fatal func(error), attempt int) {
	imgs := make([][]byte, len(batch))
	for i, it := range batch {
		imgs[i] = it.img
	}
	t0 := time.Now()
	var meta preprocessv1.BatchMeta
	var t *tensorv1.Tensor
	spec := l.wireSpec()
	err := j.retry(ctx, func(ctx context.Context) error {
		var err error
		meta, t, err = l.t.Preprocess.PreprocessBatch(ctx, imgs, &spec)
		return err
	})
	if ctx.Err() != nil {
		return
	}
	if err != nil && spec.DType != l.model.DType && preprocessv1.RefusesDType(err) {
		l.useModelSpec()
		j.preprocess(ctx, l, batch, fatal, attempt)
		return
	}
	if err != nil {
		if transient(err) {
			fatal(fmt.Errorf("preprocess: %w", err))
			return
		}
		if len(batch) > 1 { // a refusal of the whole batch: find the culprit
			for _, it := range batch {
				j.preprocess(ctx, l, []*item{it}, fatal, attempt)
			}
			return
		}
		j.laneDone(batch[0], failEntry("preprocess", err), nil)
		return
	}
	j.cfg.Observer.Stage("preprocess", len(batch), time.Since(t0))
	if len(meta.Items) != len(batch) {
		fatal(fmt.Errorf("preprocess answered %d items for %d images", len(meta.Items), len(batch)))
		return
	}
	var rowBytes int
	if t != nil {
		rowBytes = len(t.Data) / t.Shape[0]
		l.shapeMu.Lock()
		if l.rowShape == nil {
			l.rowShape = append([]int(nil), t.Shape[1:]...)
		} else if fmt.Sprint(l.rowShape) != fmt.Sprint(t.Shape[1:]) {
			l.shapeMu.Unlock()
			fatal(fmt.Errorf("preprocess answered rows %v after %v", t.Shape[1:], l.rowShape))
			return
		}
		l.shapeMu.Unlock()
	}
	var again []*item
	for _, st := range meta.Items {
		if st.Index < 0 || st.Index >= len(batch) {
			fatal(fmt.Errorf("preprocess answered item index %d of %d", st.Index, len(batch)))
			return
		}
		it := batch[st.Index]
		if st.Error != nil && (st.Error.Status >= 500 || st.Error.Status == http.StatusTooManyRequests) {
			again = append(again, it)
			continue
		}
		if st.Row < 0 || st.Error != nil {
			e := &Entry{Stage: "preprocess", Code: "preprocess_failed", Reason: "image refused"}
			if st.Error != nil {
				e.Code, e.Reason = st.Error.Code, st.Error.Message
			}
			j.laneDone(it, e, nil)
			continue
		}
		if l.idx == 0 && st.Facts != nil {
			it.mu.Lock()
			it.phash = st.Facts.PHash
			it.mu.Unlock()
			if other := j.tr.registerPHash(st.Facts.PHash, it.p.SKU); other != "" && j.tr.markDuplicate(it.p.SKU, other) {
				it.mu.Lock()
				it.dupOf, it.dupKind = other, "phash"
				it.mu.Unlock()
				if j.cfg.SkipDuplicates {
					j.laneDone(it, nil, &Entry{Code: CodeDuplicateImage, Reason: fmt.Sprintf("same image (phash %s) as SKU %s", st.Facts.PHash, other)})
					continue
				}
			}
		}
		data := t.Data[st.Row*rowBytes : (st.Row+1)*rowBytes : (st.Row+1)*rowBytes]
		select {
		case l.embedQ <- &row{it: it, data: data, dtype: t.DType}:
		case <-ctx.Done():
			return
		}
	}
	if len(again) > 0 {
		if attempt >= j.cfg.Retries {
			fatal(fmt.Errorf("preprocess kept answering 5xx/429 for %d images", len(again)))
			return
		}
		select {
		case <-time.After(min(100*time.Millisecond<<attempt, 2*time.Second)):
		case <-ctx.Done():
			return
		}
		j.preprocess(ctx, l, again, fatal, attempt+1)
	}
}
