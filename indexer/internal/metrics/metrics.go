// Package metrics records the indexer's item outcomes and stage timings as
// OpenTelemetry instruments (exported in Prometheus format by
// shared/telemetry): lookalike_indexer_items_total{model,status,code} and
// lookalike_indexer_stage_duration_seconds{stage}.
package metrics

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Observer implements job.Observer with OTel instruments.
type Observer struct {
	items  metric.Int64Counter
	errors metric.Int64Counter
	stage  metric.Float64Histogram
	rows   metric.Int64Counter
}

// New creates the instruments on m.
func New(m metric.Meter) (*Observer, error) {
	o := &Observer{}
	var err error
	if o.items, err = m.Int64Counter("lookalike.indexer.items", metric.WithDescription("Catalog items finished, by model, status (done, failed, skipped) and failure code.")); err != nil {
		return nil, fmt.Errorf("creating items counter: %w", err)
	}
	if o.errors, err = m.Int64Counter("lookalike.indexer.errors", metric.WithDescription("Items that failed, by failure code.")); err != nil {
		return nil, fmt.Errorf("creating errors counter: %w", err)
	}
	if o.rows, err = m.Int64Counter("lookalike.indexer.stage.items", metric.WithDescription("Items through each stage.")); err != nil {
		return nil, fmt.Errorf("creating stage items counter: %w", err)
	}
	if o.stage, err = m.Float64Histogram("lookalike.indexer.stage.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of one stage call (fetch one image, preprocess/embed/upsert one batch)."),
		metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)); err != nil {
		return nil, fmt.Errorf("creating stage histogram: %w", err)
	}
	return o, nil
}

// Item counts one finished item.
func (o *Observer) Item(model, status, code string) {
	ctx := context.Background()
	o.items.Add(ctx, 1, metric.WithAttributes(attribute.String("model", model), attribute.String("status", status), attribute.String("code", code)))
	if status == "failed" {
		o.errors.Add(ctx, 1, metric.WithAttributes(attribute.String("code", code)))
	}
}

// Stage records one stage call.
func (o *Observer) Stage(stage string, items int, d time.Duration) {
	ctx := context.Background()
	attrs := metric.WithAttributes(attribute.String("stage", stage))
	o.stage.Record(ctx, d.Seconds(), attrs)
	o.rows.Add(ctx, int64(items), attrs)
}
