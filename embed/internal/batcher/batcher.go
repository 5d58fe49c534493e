// Package batcher merges concurrent embed requests for one model into
// batches: up to MaxBatch items, or whatever arrived within MaxDelay of the
// oldest waiting request, from a bounded queue. Requests whose context is done
// by the time their batch forms are dropped before inference.
package batcher

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Encoder runs a model on n items given as their bytes back to back and
// returns n rows of outputs flattened, with the row length. Run must be safe
// for concurrent use when Workers > 1. *ortsession.Session is one.
type Encoder interface {
	Run(input []byte, n int) ([]float32, int, error)
	Provider() string
}

// Errors.
var (
	// ErrOverloaded means the queue is full; retry later.
	ErrOverloaded = errors.New("embed queue is full")
	// ErrClosed means the model is being unloaded.
	ErrClosed = errors.New("model is unloaded")
	// ErrInference wraps a model run failure.
	ErrInference = errors.New("inference failed")
)

// Config of one model's batcher.
type Config struct {
	// MaxBatch caps the items in one inference (default 32).
	MaxBatch int
	// MaxDelay is how long the oldest waiting request may wait for the batch
	// to fill (default 2 ms). Zero means default; negative means do not wait.
	MaxDelay time.Duration
	// QueueImages bounds the items waiting (default 8*MaxBatch).
	QueueImages int
	// Workers run inferences in parallel (default 1: one batch at a time,
	// the next one fills meanwhile).
	Workers int
	// ItemBytes is one input item's size.
	ItemBytes int
	// Dim is the output row length the model must produce.
	Dim int
}

func (c Config) withDefaults() Config {
	if c.MaxBatch <= 0 {
		c.MaxBatch = 32
	}
	if c.MaxDelay == 0 {
		c.MaxDelay = 2 * time.Millisecond
	}
	if c.MaxDelay < 0 {
		c.MaxDelay = 0
	}
	if c.QueueImages <= 0 {
		c.QueueImages = 8 * c.MaxBatch
	}
	if c.QueueImages < c.MaxBatch {
		c.QueueImages = c.MaxBatch
	}
	if c.Workers <= 0 {
		c.Workers = 1
	}
	return c
}

// Stats are running totals, for tests and benchmarks (metrics carry the same).
type Stats struct {
	Inferences int64 // model runs
	Images     int64 // items run
	Dropped    int64 // items dropped because their request was done
	Rejected   int64 // items refused because the queue was full
}

// Batcher batches one model's requests.
type Batcher struct {
	cfg   Config
	enc   Encoder
	items chan *item
	m     *instruments
	attrs metric.MeasurementOption

	mu     sync.RWMutex // guards closed and sends on items
	closed bool
	wg     sync.WaitGroup
	queued atomic.Int64 // items waiting in the queue

	inferences, images, dropped, rejected atomic.Int64
}

type item struct {
	ctx  context.Context
	data []byte
	n    int
	enq  time.Time
	done chan result
}

type result struct {
	rows []float32
	err  error
}

// New starts a batcher over enc. meter may be nil (no metrics); attrs label
// every measurement (model id, version, provider).
func New(enc Encoder, cfg Config, meter metric.Meter, attrs ...attribute.KeyValue) (*Batcher, error) {
	cfg = cfg.withDefaults()
	if cfg.ItemBytes < 1 || cfg.Dim < 1 {
		return nil, fmt.Errorf("batcher needs the item size and output dim, got %d and %d", cfg.ItemBytes, cfg.Dim)
	}
	b := &Batcher{
		cfg:   cfg,
		enc:   enc,
		items: make(chan *item, cfg.QueueImages),
		attrs: metric.WithAttributeSet(attribute.NewSet(attrs...)),
	}
	m, err := newInstruments(meter, b)
	if err != nil {
		return nil, err
	}
	b.m = m
	for range cfg.Workers {
		b.wg.Add(1)
		go b.work()
	}
	return b, nil
}

// Config is the effective configuration.
func (b *Batcher) Config() Config { return b.cfg }

// Stats returns the running totals.
func (b *Batcher) Stats() Stats {
	return Stats{Inferences: b.inferences.Load(), Images: b.images.Load(), Dropped: b.dropped.Load(), Rejected: b.rejected.Load()}
}

// QueueDepth is the number of items waiting.
func (b *Batcher) QueueDepth() int64 { return b.queued.Load() }

// Embed runs n items (their bytes back to back) and returns n*Dim outputs.
// It fails fast with ErrOverloaded when the queue cannot take all n items,
// returns ctx.Err() when ctx ends first, and ErrClosed after Close.
// Requests larger than MaxBatch are split across batches.
func (b *Batcher) Embed(ctx context.Context, input []byte, n int) ([]float32, error) {
	if n < 1 || len(input) != n*b.cfg.ItemBytes {
		return nil, fmt.Errorf("embedding: %d bytes is not %d items of %d bytes", len(input), n, b.cfg.ItemBytes)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	parts := make([]*item, 0, (n+b.cfg.MaxBatch-1)/b.cfg.MaxBatch)
	now := time.Now()
	for off := 0; off < n; off += b.cfg.MaxBatch {
		k := min(b.cfg.MaxBatch, n-off)
		parts = append(parts, &item{ctx: ctx, data: input[off*b.cfg.ItemBytes : (off+k)*b.cfg.ItemBytes], n: k, enq: now, done: make(chan result, 1)})
	}
	if err := b.enqueue(parts, n); err != nil {
		return nil, err
	}
	out := make([]float32, 0, n*b.cfg.Dim)
	for _, p := range parts {
		select {
		case r := <-p.done:
			if r.err != nil {
				return nil, r.err
			}
			out = append(out, r.rows...)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return out, nil
}

func (b *Batcher) enqueue(parts []*item, n int) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	for {
		q := b.queued.Load()
		if q+int64(n) > int64(b.cfg.QueueImages) {
			b.rejected.Add(int64(n))
			b.m.rejected.Add(context.Background(), int64(n), b.attrs)
			return ErrOverloaded
		}
		if b.queued.CompareAndSwap(q, q+int64(n)) {
			break
		}
	}
	// The channel holds QueueImages items and every item is at least one
	// image, so these sends never block.
	for _, p := range parts {
		b.items <- p
	}
	return nil
}

// Close stops taking requests, finishes every queued one, and returns when
// the workers are done or ctx ends. It does not close the encoder.
func (b *Batcher) Close(ctx context.Context) error {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.items)
	}
	b.mu.Unlock()
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
		b.m.unregister()
		return nil
	case <-ctx.Done():
		return fmt.Errorf("draining the embed queue: %w", ctx.Err())
	}
}

func (b *Batcher) work() {
	defer b.wg.Done()
	var carry *item
	var buf []byte
	batch := make([]*item, 0, b.cfg.MaxBatch)
	for {
		first := carry
		carry = nil
		if first == nil {
			var ok bool
			if first, ok = <-b.items; !ok {
				return
			}
			b.queued.Add(-int64(first.n))
		}
		batch = append(batch[:0], first)
		size := first.n
		carry = b.fill(&batch, &size, first.enq.Add(b.cfg.MaxDelay))
		buf = b.run(batch, buf)
	}
}

// fill adds queued items to batch until it holds MaxBatch items, the queue
// is closed, or the deadline passes with the queue empty. An item that would
// overflow the batch is returned to start the next one.
func (b *Batcher) fill(batch *[]*item, size *int, deadline time.Time) *item {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for *size < b.cfg.MaxBatch {
		var it *item
		var ok bool
		select {
		case it, ok = <-b.items:
		default:
			wait := time.Until(deadline)
			if wait <= 0 {
				return nil
			}
			if timer == nil {
				timer = time.NewTimer(wait)
			}
			select {
			case it, ok = <-b.items:
			case <-timer.C:
				return nil
			}
		}
		if !ok {
			return nil
		}
		b.queued.Add(-int64(it.n))
		if *size+it.n > b.cfg.MaxBatch {
			return it
		}
		*batch = append(*batch, it)
		*size += it.n
	}
	return nil
}

// run drops finished requests, runs the rest as one inference and hands out
// the rows. It returns the (reusable) input buffer.
func (b *Batcher) run(batch []*item, buf []byte) []byte {
	ctx := context.Background()
	start := time.Now()
	live := batch[:0:0]
	n := 0
	for _, it := range batch {
		if err := it.ctx.Err(); err != nil {
			b.dropped.Add(int64(it.n))
			reason := "canceled"
			if errors.Is(err, context.DeadlineExceeded) {
				reason = "deadline"
			}
			b.m.dropped.Add(ctx, int64(it.n), b.attrs, metric.WithAttributes(attribute.String("reason", reason)))
			it.done <- result{err: err}
			continue
		}
		b.m.queueWait.Record(ctx, start.Sub(it.enq).Seconds(), b.attrs)
		live = append(live, it)
		n += it.n
	}
	if n == 0 {
		return buf
	}
	var input []byte
	if len(live) == 1 {
		input = live[0].data
	} else {
		if cap(buf) < n*b.cfg.ItemBytes {
			buf = make([]byte, 0, b.cfg.MaxBatch*b.cfg.ItemBytes)
		}
		buf = buf[:0]
		for _, it := range live {
			buf = append(buf, it.data...)
		}
		input = buf
	}
	out, dim, err := b.enc.Run(input, n)
	took := time.Since(start)
	b.inferences.Add(1)
	b.images.Add(int64(n))
	b.m.batchSize.Record(ctx, int64(n), b.attrs)
	b.m.inference.Record(ctx, took.Seconds(), b.attrs)
	b.m.images.Add(ctx, int64(n), b.attrs)
	if err == nil && (dim != b.cfg.Dim || len(out) != n*dim) {
		err = fmt.Errorf("model gave %d values in rows of %d for %d items, want rows of %d", len(out), dim, n, b.cfg.Dim)
	}
	if err != nil {
		b.m.failures.Add(ctx, 1, b.attrs)
		err = fmt.Errorf("%w: %w", ErrInference, err)
		for _, it := range live {
			it.done <- result{err: err}
		}
		return buf
	}
	off := 0
	for _, it := range live {
		end := off + it.n*dim
		it.done <- result{rows: out[off:end:end]}
		off = end
	}
	return buf
}
