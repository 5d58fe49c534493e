package service

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// registerMetrics exports each downstream instance's readiness and breaker
// state as gauges (lookalike_gateway_upstream_ready and
// lookalike_gateway_upstream_breaker_open at /metrics).
func (s *Service) registerMetrics(m metric.Meter) error {
	ready, err := m.Int64ObservableGauge("lookalike.gateway.upstream.ready",
		metric.WithDescription("1 when the downstream instance passes its readiness probe."))
	if err != nil {
		return fmt.Errorf("creating upstream ready gauge: %w", err)
	}
	open, err := m.Int64ObservableGauge("lookalike.gateway.upstream.breaker_open",
		metric.WithDescription("1 when the downstream instance's circuit breaker is open."))
	if err != nil {
		return fmt.Errorf("creating upstream breaker gauge: %w", err)
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, p := range s.Pools {
			for _, st := range p.States() {
				attrs := metric.WithAttributes(attribute.String("downstream", p.Name()), attribute.String("instance", st.URL))
				o.ObserveInt64(ready, b2i(st.Ready), attrs)
				o.ObserveInt64(open, b2i(st.Breaker == "open"), attrs)
			}
		}
		return nil
	}, ready, open)
	if err != nil {
		return fmt.Errorf("registering upstream gauges: %w", err)
	}
	return nil
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
