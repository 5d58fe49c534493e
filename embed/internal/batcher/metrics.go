package batcher

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// Metric names (Prometheus adds _total to counters and the unit suffix).
const (
	MetricBatchSize  = "embed_batch_size"
	MetricQueueWait  = "embed_queue_wait"
	MetricInference  = "embed_inference"
	MetricImages     = "embed_images"
	MetricDropped    = "embed_dropped_images"
	MetricRejected   = "embed_rejected_images"
	MetricFailures   = "embed_inference_failures"
	MetricQueueDepth = "embed_queue_depth"
)

type instruments struct {
	batchSize metric.Int64Histogram
	queueWait metric.Float64Histogram
	inference metric.Float64Histogram
	images    metric.Int64Counter
	dropped   metric.Int64Counter
	rejected  metric.Int64Counter
	failures  metric.Int64Counter
	reg       metric.Registration
}

func newInstruments(meter metric.Meter, b *Batcher) (*instruments, error) {
	if meter == nil {
		meter = noop.NewMeterProvider().Meter("embed")
	}
	var m instruments
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	var err error
	m.batchSize, err = meter.Int64Histogram(MetricBatchSize, metric.WithDescription("Images per inference; its count is the number of inferences."), metric.WithUnit("{image}"),
		metric.WithExplicitBucketBoundaries(1, 2, 4, 8, 16, 24, 32, 48, 64, 128, 256))
	add(err)
	secs := metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
	m.queueWait, err = meter.Float64Histogram(MetricQueueWait, metric.WithDescription("Time a request waited for its batch to start."), metric.WithUnit("s"), secs)
	add(err)
	m.inference, err = meter.Float64Histogram(MetricInference, metric.WithDescription("Model run time per batch."), metric.WithUnit("s"), secs)
	add(err)
	m.images, err = meter.Int64Counter(MetricImages, metric.WithDescription("Images embedded (rate() gives images/s)."), metric.WithUnit("{image}"))
	add(err)
	m.dropped, err = meter.Int64Counter(MetricDropped, metric.WithDescription("Images dropped before inference because the request's deadline passed or it was canceled."), metric.WithUnit("{image}"))
	add(err)
	m.rejected, err = meter.Int64Counter(MetricRejected, metric.WithDescription("Images refused because the queue was full (429)."), metric.WithUnit("{image}"))
	add(err)
	m.failures, err = meter.Int64Counter(MetricFailures, metric.WithDescription("Model runs that failed."))
	add(err)
	depth, err := meter.Int64ObservableGauge(MetricQueueDepth, metric.WithDescription("Images waiting for a batch."), metric.WithUnit("{image}"))
	add(err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("creating embed metrics: %w", err)
	}
	m.reg, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(depth, b.queued.Load(), b.attrs)
		return nil
	}, depth)
	if err != nil {
		return nil, fmt.Errorf("creating embed metrics: %w", err)
	}
	return &m, nil
}

func (m *instruments) unregister() {
	if m.reg != nil {
		_ = m.reg.Unregister()
	}
}
