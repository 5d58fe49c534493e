package metrics

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

func TestObserverRecords(t *testing.T) {
	rd := metric.NewManualReader()
	mp := metric.NewMeterProvider(metric.WithReader(rd))
	o, err := New(mp.Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	o.Item("m", "done", "")
	o.Item("m", "failed", "corrupt_image")
	o.Item("m", "failed", "corrupt_image")
	o.Stage("embed", 32, 40*time.Millisecond)
	var rm metricdata.ResourceMetrics
	if err := rd.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if s, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, dp := range s.DataPoints {
					got[m.Name] += dp.Value
				}
			}
		}
	}
	want := map[string]int64{"lookalike.indexer.items": 3, "lookalike.indexer.errors": 2, "lookalike.indexer.stage.items": 32}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d (all %v)", k, got[k], v, got)
		}
	}
}
