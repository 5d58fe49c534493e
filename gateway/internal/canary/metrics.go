package canary

import (
	"context"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// Metrics records the canary's figures twice: as OpenTelemetry instruments
// (Prometheus at /metrics, the fleet view across replicas) and in a small
// in-memory summary per model (this replica's view, for the report).
type Metrics struct {
	queries  metric.Int64Counter
	latency  metric.Float64Histogram
	topScore metric.Float64Histogram
	overlap  metric.Float64Histogram
	shadows  metric.Int64Counter
	writes   metric.Int64Counter

	mu     sync.Mutex
	models map[string]*modelStats
	shadow shadowStats
}

// window is how many recent samples quantiles are computed over.
const window = 2048

type ring struct {
	buf  []float64
	next int
}

func (r *ring) add(v float64) {
	if len(r.buf) < window {
		r.buf = append(r.buf, v)
		return
	}
	r.buf[r.next] = v
	r.next = (r.next + 1) % window
}

// quantiles returns the p50, p90 and p99 of the samples.
func (r *ring) quantiles() (p50, p90, p99 float64) {
	if len(r.buf) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(r.buf)
	slices.Sort(s)
	q := func(p float64) float64 { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return q(0.5), q(0.9), q(0.99)
}

type modelStats struct {
	arm              string
	queries, errors  int64
	latency, score   ring
	writes, writeErr int64
}

type shadowStats struct {
	runs, errors, dropped int64
	overlapSum            float64
	overlap               ring
}

// NewMetrics registers the instruments on meter (nil: none exported).
func NewMetrics(meter metric.Meter) (*Metrics, error) {
	if meter == nil {
		meter = noop.NewMeterProvider().Meter("canary")
	}
	m := &Metrics{models: map[string]*modelStats{}}
	var err error
	if m.queries, err = meter.Int64Counter("lookalike.canary.queries",
		metric.WithDescription("Search queries by model (vector space), arm and outcome (ok, client_error, error).")); err != nil {
		return nil, err
	}
	if m.latency, err = meter.Float64Histogram("lookalike.canary.query.duration", metric.WithUnit("s"),
		metric.WithDescription("Search query latency by model and arm."),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)); err != nil {
		return nil, err
	}
	scoreBuckets := metric.WithExplicitBucketBoundaries(0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 1)
	if m.topScore, err = meter.Float64Histogram("lookalike.canary.top_score", scoreBuckets,
		metric.WithDescription("Score distribution: the best hit's cosine score per query, by model and arm.")); err != nil {
		return nil, err
	}
	if m.overlap, err = meter.Float64Histogram("lookalike.canary.shadow.overlap_at_10",
		metric.WithExplicitBucketBoundaries(0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1),
		metric.WithDescription("Result overlap@10 between the stable answer and the canary's shadow answer to the same query.")); err != nil {
		return nil, err
	}
	if m.shadows, err = meter.Int64Counter("lookalike.canary.shadow.runs",
		metric.WithDescription("Shadow queries run on the canary off the response path, by outcome (ok, error, dropped).")); err != nil {
		return nil, err
	}
	if m.writes, err = meter.Int64Counter("lookalike.canary.writes",
		metric.WithDescription("Product writes per space during a rollout (dual write), by model, role and outcome.")); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Metrics) stats(model, arm string) *modelStats {
	s := m.models[model]
	if s == nil {
		s = &modelStats{}
		m.models[model] = s
	}
	s.arm = arm
	return s
}

// Outcome classes.
const (
	OutcomeOK          = "ok"
	OutcomeClientError = "client_error"
	OutcomeError       = "error"
)

// Query records one answered (or failed) query. topScore < 0 means no hits.
func (m *Metrics) Query(ctx context.Context, model string, arm Arm, d time.Duration, outcome string, topScore float64) {
	attrs := metric.WithAttributes(attribute.String("model", model), attribute.String("arm", arm.String()))
	m.queries.Add(ctx, 1, metric.WithAttributes(attribute.String("model", model), attribute.String("arm", arm.String()), attribute.String("outcome", outcome)))
	if outcome == OutcomeOK {
		m.latency.Record(ctx, d.Seconds(), attrs)
		if topScore >= 0 {
			m.topScore.Record(ctx, topScore, attrs)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.stats(model, arm.String())
	s.queries++
	if outcome == OutcomeError {
		s.errors++
	}
	if outcome == OutcomeOK {
		s.latency.add(d.Seconds())
		if topScore >= 0 {
			s.score.add(topScore)
		}
	}
}

// Shadow records one shadow comparison; overlap < 0 means it failed.
func (m *Metrics) Shadow(ctx context.Context, stable, canary string, overlap float64) {
	outcome := OutcomeOK
	if overlap < 0 {
		outcome = OutcomeError
	} else {
		m.overlap.Record(ctx, overlap, metric.WithAttributes(attribute.String("stable_model", stable), attribute.String("canary_model", canary)))
	}
	m.shadows.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
	m.mu.Lock()
	defer m.mu.Unlock()
	m.shadow.runs++
	if overlap < 0 {
		m.shadow.errors++
		return
	}
	m.shadow.overlapSum += overlap
	m.shadow.overlap.add(overlap)
}

// ShadowDropped records a shadow query skipped because too many were running.
func (m *Metrics) ShadowDropped(ctx context.Context) {
	m.shadows.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", "dropped")))
	m.mu.Lock()
	m.shadow.dropped++
	m.mu.Unlock()
}

// Write records a product write to one space.
func (m *Metrics) Write(ctx context.Context, model string, arm Arm, err error) {
	outcome := OutcomeOK
	if err != nil {
		outcome = OutcomeError
	}
	m.writes.Add(ctx, 1, metric.WithAttributes(attribute.String("model", model), attribute.String("role", arm.String()), attribute.String("outcome", outcome)))
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.stats(model, arm.String())
	s.writes++
	if err != nil {
		s.writeErr++
	}
}

// ModelReport is one model's figures on this replica.
type ModelReport struct {
	Model       string  `json:"model"`
	Arm         string  `json:"arm"`
	Queries     int64   `json:"queries"`
	Errors      int64   `json:"errors"`
	ErrorRate   float64 `json:"error_rate"`
	LatencyP50  float64 `json:"latency_p50_ms"`
	LatencyP90  float64 `json:"latency_p90_ms"`
	LatencyP99  float64 `json:"latency_p99_ms"`
	TopScoreP50 float64 `json:"top_score_p50"`
	TopScoreP90 float64 `json:"top_score_p90"`
	TopScoreP10 float64 `json:"top_score_p10"`
	Writes      int64   `json:"writes"`
	WriteErrors int64   `json:"write_errors"`
}

// ShadowReport summarises the shadow comparison on this replica.
type ShadowReport struct {
	Runs        int64   `json:"runs"`
	Errors      int64   `json:"errors"`
	Dropped     int64   `json:"dropped"`
	OverlapMean float64 `json:"overlap_at_10_mean"`
	OverlapP10  float64 `json:"overlap_at_10_p10"`
	OverlapP50  float64 `json:"overlap_at_10_p50"`
}

// Report returns this replica's figures, by model name.
func (m *Metrics) Report() ([]ModelReport, ShadowReport) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []ModelReport
	for name, s := range m.models {
		r := ModelReport{Model: name, Arm: s.arm, Queries: s.queries, Errors: s.errors, Writes: s.writes, WriteErrors: s.writeErr}
		if s.queries > 0 {
			r.ErrorRate = float64(s.errors) / float64(s.queries)
		}
		p50, p90, p99 := s.latency.quantiles()
		r.LatencyP50, r.LatencyP90, r.LatencyP99 = p50*1000, p90*1000, p99*1000
		r.TopScoreP50, r.TopScoreP90, _ = s.score.quantiles()
		if len(s.score.buf) > 0 {
			sc := slices.Clone(s.score.buf)
			slices.Sort(sc)
			r.TopScoreP10 = sc[int(0.1*float64(len(sc)))]
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b ModelReport) int {
		if a.Model < b.Model {
			return -1
		}
		if a.Model > b.Model {
			return 1
		}
		return 0
	})
	sh := ShadowReport{Runs: m.shadow.runs, Errors: m.shadow.errors, Dropped: m.shadow.dropped}
	if ok := m.shadow.runs - m.shadow.errors; ok > 0 {
		sh.OverlapMean = m.shadow.overlapSum / float64(ok)
	}
	if len(m.shadow.overlap.buf) > 0 {
		sc := slices.Clone(m.shadow.overlap.buf)
		slices.Sort(sc)
		sh.OverlapP10 = sc[int(0.1*float64(len(sc)))]
		sh.OverlapP50 = sc[len(sc)/2]
	}
	return out, sh
}
