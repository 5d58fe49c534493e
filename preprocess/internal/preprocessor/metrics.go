package preprocessor

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// Metrics are the service's own instruments (RED metrics come from the
// server): decode and resize time by format, bytes in, rejections by code,
// the decode memory reserved by decodes in progress.
type Metrics struct {
	decode, resize metric.Float64Histogram
	bytes          metric.Int64Counter
	rejections     metric.Int64Counter
	memory         metric.Int64UpDownCounter
}

// NewMetrics creates the instruments on m.
func NewMetrics(m metric.Meter) (*Metrics, error) {
	var out Metrics
	var err error
	buckets := metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
	if out.decode, err = m.Float64Histogram("preprocess.decode.duration", metric.WithUnit("s"),
		metric.WithDescription("Image decode time, by format."), buckets); err != nil {
		return nil, fmt.Errorf("creating decode histogram: %w", err)
	}
	if out.resize, err = m.Float64Histogram("preprocess.resize.duration", metric.WithUnit("s"),
		metric.WithDescription("Resize, crop and normalisation time, by format."), buckets); err != nil {
		return nil, fmt.Errorf("creating resize histogram: %w", err)
	}
	if out.bytes, err = m.Int64Counter("preprocess.bytes_in", metric.WithUnit("By"),
		metric.WithDescription("Image bytes received.")); err != nil {
		return nil, fmt.Errorf("creating bytes counter: %w", err)
	}
	if out.rejections, err = m.Int64Counter("preprocess.rejections",
		metric.WithDescription("Images refused, by error code.")); err != nil {
		return nil, fmt.Errorf("creating rejections counter: %w", err)
	}
	if out.memory, err = m.Int64UpDownCounter("preprocess.decode.memory", metric.WithUnit("By"),
		metric.WithDescription("Decode memory reserved by the decodes in progress (their estimated allocation).")); err != nil {
		return nil, fmt.Errorf("creating decode memory gauge: %w", err)
	}
	return &out, nil
}

// NopMetrics records nothing.
func NopMetrics() *Metrics {
	m, _ := NewMetrics(noop.NewMeterProvider().Meter("nop"))
	return m
}

func (m *Metrics) decoded(ctx context.Context, format string, d time.Duration) {
	m.decode.Record(ctx, d.Seconds(), metric.WithAttributes(attribute.String("format", format)))
}

func (m *Metrics) resized(ctx context.Context, format string, d time.Duration) {
	m.resize.Record(ctx, d.Seconds(), metric.WithAttributes(attribute.String("format", format)))
}

func (m *Metrics) bytesIn(ctx context.Context, n int) { m.bytes.Add(ctx, int64(n)) }

func (m *Metrics) rejected(ctx context.Context, code string) {
	m.rejections.Add(ctx, 1, metric.WithAttributes(attribute.String("code", code)))
}

func (m *Metrics) reserved(n int64) { m.memory.Add(context.Background(), n) }
