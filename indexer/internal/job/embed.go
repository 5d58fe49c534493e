package job

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"
)

// batchTensor joins the rows into one tensor. Rows are all uint8 or all of
// the model's dtype, except around a fall back from uint8 (a preprocess
// refused it): then the uint8 rows are widened here, as embed would.
func (l *lane) batchTensor(shape []int, batch []*row) (tensorv1.Tensor, error) {
	dt := batch[0].dtype
	mixed := slices.ContainsFunc(batch, func(r *row) bool { return r.dtype != dt })
	if mixed {
		dt = tensorv1.Float32
	}
	data := make([]byte, 0, len(batch)*len(batch[0].data)*dt.Size()/batch[0].dtype.Size())
	for _, r := range batch {
		if r.dtype == dt {
			data = append(data, r.data...)
			continue
		}
		if r.dtype != tensorv1.Uint8 || dt != tensorv1.Float32 {
			return tensorv1.Tensor{}, fmt.Errorf("preprocess answered %s rows beside %s ones", r.dtype, dt)
		}
		n := len(data)
		data = append(data, make([]byte, 4*len(r.data))...)
		if err := l.model.Widen(data[n:], r.data); err != nil {
			return tensorv1.Tensor{}, fmt.Errorf("widening a uint8 row: %w", err)
		}
	}
	return tensorv1.Tensor{DType: dt, Shape: shape, Data: data}, nil
}

func (j *Job) embedStage(ctx context.Context, l *lane, fatal func(error)) {
	for {
		batch, ok := gather(ctx, l.embedQ, j.cfg.EmbedBatch, j.cfg.Linger)
		if !ok {
			return
		}
		if ctx.Err() != nil {
			continue
		}
		l.shapeMu.Lock()
		shape := append([]int{len(batch)}, l.rowShape...)
		l.shapeMu.Unlock()
		t, err := l.batchTensor(shape, batch)
		if err != nil {
			fatal(err)
			continue
		}
		t0 := time.Now()
		var vecs [][]float32
		err = j.retry(ctx, func(ctx context.Context) error {
			e, err := l.t.Embed.Embed(ctx, t, l.t.Model)
			if err != nil {
				return err
			}
			if e.ModelID != l.t.Model || e.Dim != l.dim || len(e.Vectors) != len(batch) {
				return apierror.New(http.StatusBadGateway, CodeServiceResponse, "embed answered %d vectors of model %q dim %d, want %d of %q dim %d", len(e.Vectors), e.ModelID, e.Dim, len(batch), l.t.Model, l.dim)
			}
			vecs = e.Vectors
			return nil
		})
		if ctx.Err() != nil {
			continue
		}
		if err != nil {
			if transient(err) {
				fatal(fmt.Errorf("embed: %w", err))
				continue
			}
			for _, r := range batch {
				j.laneDone(r.it, failEntry("embed", err), nil)
			}
			continue
		}
		j.cfg.Observer.Stage("embed", len(batch), time.Since(t0))
		for i, r := range batch {
			r.vec, r.data = vecs[i], nil
			select {
			case l.upsertQ <- r:
			case <-ctx.Done():
			}
		}
	}
}
