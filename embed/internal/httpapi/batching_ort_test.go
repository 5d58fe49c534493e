//go:build cgo

package httpapi

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/labstack/echo/v4"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"net/http/httptest"

	"github.com/lookalike-dev/lookalike/embed/internal/batcher"
	"github.com/lookalike-dev/lookalike/embed/internal/modelspec"
	"github.com/lookalike-dev/lookalike/embed/internal/ortsession"
	"github.com/lookalike-dev/lookalike/embed/internal/registry"
	"github.com/lookalike-dev/lookalike/embed/internal/testenv"
	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"
	"github.com/lookalike-dev/lookalike/shared/server"
)

// TestBatchingWithONNXRuntime sends 64 concurrent single-image requests to
// the real model through HTTP: they must run in fewer than 64 inferences
// (read from the batch-size metric) and each answer must equal the image's
// unbatched embedding to 1e-5. It needs the ONNX Runtime library and fails
// when it is missing.
func TestBatchingWithONNXRuntime(t *testing.T) {
	rt, err := ortsession.NewRuntime(testenv.ORTLib(t))
	if err != nil {
		t.Fatalf("loading ONNX Runtime: %v", err)
	}
	defer rt.Close()
	base := ortsession.SessionOptions{Provider: ortsession.ProviderCPU, IntraOpThreads: 2, InterOpThreads: 1}

	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	reg := registry.New(registry.Config{
		SpecDir: testenv.SpecDir(t), ModelDir: testenv.ModelDir(t), Models: []string{features}, DefaultModel: features,
		Batching: registry.Batching{MaxBatch: 32, MaxDelay: 5e6, QueueImages: 256},
		NewEncoder: func(l modelspec.Loaded) (registry.Encoder, error) {
			return rt.NewSession(l.ONNX, ortsession.OptionsFor(l, base))
		},
		Meter: mp.Meter("test"),
	})
	if err := reg.LoadDir(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer reg.Close(context.Background())
	e := echo.New()
	e.HTTPErrorHandler = func(err error, c echo.Context) { apierror.Write(c.Response(), server.ToAPIError(err)) }
	New(reg, Config{}).Register(e)
	srv := httptest.NewServer(e)
	defer srv.Close()
	client := &embedv1.Client{BaseURL: srv.URL}

	const n = 64
	imgs := make([]tensorv1.Tensor, n)
	r := rand.New(rand.NewPCG(42, 1))
	for i := range imgs {
		v := make([]float32, 3*224*224)
		for j := range v {
			v[j] = float32(r.NormFloat64())
		}
		imgs[i] = tensorv1.FromFloat32([]int{1, 3, 224, 224}, v)
	}
	got := make([][]float32, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			emb, err := client.Embed(context.Background(), imgs[i], "")
			if err != nil {
				errs <- err
				return
			}
			got[i] = emb.Vectors[0]
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	inferences, images := batchMetric(t, reader)
	t.Logf("%d single-image requests ran in %d inferences", images, inferences)
	if images != n || inferences >= n {
		t.Fatalf("batch-size metric: %d images in %d inferences, want %d images in fewer than %d", images, inferences, n, n)
	}

	// The reference: each image alone through a separate session.
	specs, err := modelspec.ReadDir(testenv.SpecDir(t))
	if err != nil {
		t.Fatal(err)
	}
	var spec modelspec.Spec
	for _, s := range specs {
		if s.ID == features {
			spec = s
		}
	}
	l, err := modelspec.Load(spec, testenv.ModelDir(t))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := rt.NewSession(l.ONNX, ortsession.OptionsFor(l, base))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	worst := 0.0
	for i := range n {
		want, dim, err := ref.Run(imgs[i].Data, 1)
		if err != nil {
			t.Fatal(err)
		}
		if dim != 1280 || len(got[i]) != 1280 {
			t.Fatalf("image %d: dims %d and %d", i, dim, len(got[i]))
		}
		registry.Normalize(want, nil)
		for j := range want {
			worst = math.Max(worst, math.Abs(float64(want[j]-got[i][j])))
		}
	}
	t.Logf("largest difference batched vs alone: %g", worst)
	if slicesEqual(got[0], got[1]) {
		t.Fatal("two different images got the same embedding")
	}
	if worst > 1e-5 {
		t.Fatalf("batched embeddings differ from unbatched ones by %g > 1e-5", worst)
	}
}

func batchMetric(t *testing.T, r *sdkmetric.ManualReader) (count uint64, sum int64) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if h, ok := m.Data.(metricdata.Histogram[int64]); ok && m.Name == batcher.MetricBatchSize {
				for _, dp := range h.DataPoints {
					count += dp.Count
					sum += dp.Sum
				}
			}
		}
	}
	return count, sum
}

func slicesEqual(a, b []float32) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return len(a) == len(b)
}
