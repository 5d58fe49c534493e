package batcher

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

const itemBytes = 4

// fakeEncoder maps each 4-byte item to the row [b0, b1+b2*256, float(n)]:
// the first two values identify the item, the third tells the batch size.
type fakeEncoder struct {
	mu      sync.Mutex
	batches []int
	seen    map[byte]bool
	gate    chan struct{} // when set, each Run waits for a token
	started chan int      // when set, each Run reports its size first
	delay   time.Duration
	err     error
	dim     int
}

func (f *fakeEncoder) Provider() string { return "fake" }

func (f *fakeEncoder) Run(input []byte, n int) ([]float32, int, error) {
	if f.started != nil {
		f.started <- n
	}
	if f.gate != nil {
		<-f.gate
	}
	time.Sleep(f.delay)
	f.mu.Lock()
	f.batches = append(f.batches, n)
	if f.seen == nil {
		f.seen = map[byte]bool{}
	}
	for i := range n {
		f.seen[input[i*itemBytes]] = true
	}
	f.mu.Unlock()
	if f.err != nil {
		return nil, 0, f.err
	}
	dim := 3
	if f.dim != 0 {
		dim = f.dim
	}
	out := make([]float32, 0, n*dim)
	for i := range n {
		it := input[i*itemBytes:]
		row := []float32{float32(it[0]), float32(int(it[1]) + 256*int(it[2])), float32(n)}
		for len(row) < dim {
			row = append(row, 0)
		}
		out = append(out, row[:dim]...)
	}
	return out, dim, nil
}

func (f *fakeEncoder) sizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.batches...)
}

func items(ids ...int) []byte {
	b := make([]byte, 0, len(ids)*itemBytes)
	for _, id := range ids {
		b = append(b, byte(id), byte(id%256), byte(id/256), 0)
	}
	return b
}

func newBatcher(t *testing.T, enc Encoder, cfg Config, meter ...sdkmetric.Option) (*Batcher, *sdkmetric.ManualReader) {
	t.Helper()
	cfg.ItemBytes = itemBytes
	if cfg.Dim == 0 {
		cfg.Dim = 3
	}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	b, err := New(enc, cfg, mp.Meter("test"), attribute.String("model_id", "m"), attribute.String("provider", enc.Provider()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.Close(ctx)
	})
	return b, reader
}

func checkRows(t *testing.T, rows []float32, ids ...int) {
	t.Helper()
	if len(rows) != 3*len(ids) {
		t.Fatalf("%d values for %d items", len(rows), len(ids))
	}
	for i, id := range ids {
		if rows[3*i] != float32(byte(id)) || rows[3*i+1] != float32(id) {
			t.Fatalf("row %d = %v, want item %d", i, rows[3*i:3*i+3], id)
		}
	}
}

func TestConcurrentRequestsAreBatched(t *testing.T) {
	enc := &fakeEncoder{delay: 5 * time.Millisecond}
	b, reader := newBatcher(t, enc, Config{MaxBatch: 32, MaxDelay: 20 * time.Millisecond, QueueImages: 256})
	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rows, err := b.Embed(context.Background(), items(i+1), 1)
			if err != nil {
				errs <- err
				return
			}
			if rows[0] != float32(byte(i+1)) || rows[1] != float32(i+1) {
				errs <- fmt.Errorf("request %d got the row of item %v", i+1, rows[1])
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := b.Stats()
	if st.Images != n || st.Inferences >= n {
		t.Fatalf("stats %+v: want %d images in fewer than %d inferences", st, n, n)
	}
	for _, s := range enc.sizes() {
		if s > 32 {
			t.Errorf("batch of %d exceeds max_batch 32", s)
		}
	}
	// The metrics tell the same story.
	count, sum := histogram(t, reader, MetricBatchSize)
	if count != uint64(st.Inferences) || sum != n {
		t.Errorf("batch size histogram count %d sum %d, want %d and %d", count, sum, st.Inferences, n)
	}
}

func TestLargeRequestIsSplitInOrder(t *testing.T) {
	enc := &fakeEncoder{}
	b, _ := newBatcher(t, enc, Config{MaxBatch: 8, MaxDelay: -1, QueueImages: 64})
	ids := make([]int, 21)
	for i := range ids {
		ids[i] = 300 + i
	}
	rows, err := b.Embed(context.Background(), items(ids...), len(ids))
	if err != nil {
		t.Fatal(err)
	}
	checkRows(t, rows, ids...)
	for _, s := range enc.sizes() {
		if s > 8 {
			t.Errorf("batch of %d exceeds max_batch 8", s)
		}
	}
}

func TestInvalidInput(t *testing.T) {
	b, _ := newBatcher(t, &fakeEncoder{}, Config{})
	tests := []struct {
		name string
		in   []byte
		n    int
	}{
		{"zero items", nil, 0},
		{"short", items(1)[:3], 1},
		{"count mismatch", items(1, 2), 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := b.Embed(context.Background(), tc.in, tc.n); err == nil {
				t.Error("Embed succeeded")
			}
		})
	}
}

func TestQueueFull(t *testing.T) {
	enc := &fakeEncoder{gate: make(chan struct{}), started: make(chan int, 16)}
	b, reader := newBatcher(t, enc, Config{MaxBatch: 2, MaxDelay: -1, QueueImages: 4})
	var wg sync.WaitGroup
	results := make(chan error, 16)
	submit := func(ids ...int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := b.Embed(context.Background(), items(ids...), len(ids))
			results <- err
		}()
	}
	// The first request occupies the worker...
	submit(1, 2)
	<-enc.started
	// ...then four images fill the queue.
	submit(3, 4)
	submit(5, 6)
	waitFor(t, func() bool { return b.QueueDepth() == 4 })
	// A full queue refuses at once, for one image or many.
	for _, ids := range [][]int{{7}, {8, 9, 10}} {
		if _, err := b.Embed(context.Background(), items(ids...), len(ids)); !errors.Is(err, ErrOverloaded) {
			t.Fatalf("Embed on a full queue: %v, want ErrOverloaded", err)
		}
	}
	if st := b.Stats(); st.Rejected != 4 {
		t.Errorf("rejected %d images, want 4", st.Rejected)
	}
	if got := counter(t, reader, MetricRejected); got != 4 {
		t.Errorf("rejected metric %d, want 4", got)
	}
	// Releasing the model lets every accepted request finish.
	go func() {
		for range enc.started {
			enc.gate <- struct{}{}
		}
	}()
	enc.gate <- struct{}{}
	wg.Wait()
	close(results)
	for err := range results {
		if err != nil {
			t.Errorf("accepted request failed: %v", err)
		}
	}
	// And the queue takes work again.
	if _, err := b.Embed(context.Background(), items(11), 1); err != nil {
		t.Errorf("after draining: %v", err)
	}
	close(enc.started)
}

func TestExpiredRequestsAreDroppedBeforeInference(t *testing.T) {
	enc := &fakeEncoder{gate: make(chan struct{}), started: make(chan int, 16)}
	b, reader := newBatcher(t, enc, Config{MaxBatch: 4, MaxDelay: -1, QueueImages: 16})
	first := make(chan error, 1)
	go func() {
		_, err := b.Embed(context.Background(), items(1), 1)
		first <- err
	}()
	<-enc.started // the worker is busy with item 1

	// Item 2's deadline passes while it waits; item 3 is canceled; item 4 lives.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	ctx3, cancel3 := context.WithCancel(context.Background())
	errs := make(chan error, 3)
	go func() { _, err := b.Embed(ctx2, items(2), 1); errs <- err }()
	go func() { _, err := b.Embed(ctx3, items(3), 1); errs <- err }()
	live := make(chan []float32, 1)
	go func() {
		rows, err := b.Embed(context.Background(), items(4), 1)
		if err != nil {
			errs <- err
		}
		live <- rows
	}()
	waitFor(t, func() bool { return b.QueueDepth() == 3 })
	cancel3()
	var got []error
	for range 2 {
		got = append(got, <-errs)
	}
	deadline, canceled := 0, 0
	for _, err := range got {
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			deadline++
		case errors.Is(err, context.Canceled):
			canceled++
		default:
			t.Errorf("expired request: %v", err)
		}
	}
	if deadline != 1 || canceled != 1 {
		t.Errorf("got %v, want one deadline and one cancel", got)
	}
	go func() {
		for range enc.started {
			enc.gate <- struct{}{}
		}
	}()
	enc.gate <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	checkRows(t, <-live, 4)
	close(enc.started)
	enc.mu.Lock()
	defer enc.mu.Unlock()
	if enc.seen[2] || enc.seen[3] {
		t.Errorf("expired items reached the model: %v", enc.seen)
	}
	if st := b.Stats(); st.Dropped != 2 {
		t.Errorf("dropped %d, want 2", st.Dropped)
	}
	if got := counter(t, reader, MetricDropped); got != 2 {
		t.Errorf("dropped metric %d, want 2", got)
	}
}

func TestMaxDelayGathersLateArrivals(t *testing.T) {
	tests := []struct {
		name       string
		delay      time.Duration
		wantMerged bool
	}{
		{"waits for a companion", 500 * time.Millisecond, true},
		{"no wait runs at once", -1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			enc := &fakeEncoder{}
			b, _ := newBatcher(t, enc, Config{MaxBatch: 4, MaxDelay: tc.delay})
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = b.Embed(context.Background(), items(1), 1) }()
			time.Sleep(50 * time.Millisecond)
			go func() { defer wg.Done(); _, _ = b.Embed(context.Background(), items(2), 1) }()
			wg.Wait()
			merged := len(enc.sizes()) == 1
			if merged != tc.wantMerged {
				t.Errorf("batches %v, merged=%v want %v", enc.sizes(), merged, tc.wantMerged)
			}
		})
	}
}

func TestCloseFinishesQueuedWork(t *testing.T) {
	enc := &fakeEncoder{gate: make(chan struct{}), started: make(chan int, 16)}
	b, _ := newBatcher(t, enc, Config{MaxBatch: 2, MaxDelay: -1, QueueImages: 8})
	var wg sync.WaitGroup
	var ok atomic.Int32
	submit := func(id int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rows, err := b.Embed(context.Background(), items(id), 1)
			if err == nil && rows[1] == float32(id) {
				ok.Add(1)
			}
		}()
	}
	submit(1)
	<-enc.started // the worker holds item 1
	for id := 2; id <= 5; id++ {
		submit(id)
	}
	waitFor(t, func() bool { return b.QueueDepth() == 4 })
	closed := make(chan error, 1)
	go func() { closed <- b.Close(context.Background()) }()
	waitFor(t, func() bool {
		b.mu.RLock()
		defer b.mu.RUnlock()
		return b.closed
	})
	if _, err := b.Embed(context.Background(), items(9), 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Embed after Close: %v, want ErrClosed", err)
	}
	go func() {
		for range enc.started {
			enc.gate <- struct{}{}
		}
	}()
	enc.gate <- struct{}{}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(enc.started)
	if ok.Load() != 5 {
		t.Errorf("%d of 5 in-flight requests finished after Close", ok.Load())
	}
}

func TestEncoderFailures(t *testing.T) {
	tests := []struct {
		name string
		enc  *fakeEncoder
	}{
		{"run error", &fakeEncoder{err: errors.New("boom")}},
		{"wrong dim", &fakeEncoder{dim: 5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := newBatcher(t, tc.enc, Config{MaxDelay: -1})
			if _, err := b.Embed(context.Background(), items(1), 1); !errors.Is(err, ErrInference) {
				t.Errorf("err = %v, want ErrInference", err)
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met within 5s")
}

func collect(t *testing.T, r *sdkmetric.ManualReader) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	return rm
}

func histogram(t *testing.T, r *sdkmetric.ManualReader, name string) (count uint64, sum int64) {
	t.Helper()
	for _, sm := range collect(t, r).ScopeMetrics {
		for _, m := range sm.Metrics {
			if h, ok := m.Data.(metricdata.Histogram[int64]); ok && m.Name == name {
				for _, dp := range h.DataPoints {
					count += dp.Count
					sum += dp.Sum
				}
			}
		}
	}
	return count, sum
}

func counter(t *testing.T, r *sdkmetric.ManualReader, name string) (v int64) {
	t.Helper()
	for _, sm := range collect(t, r).ScopeMetrics {
		for _, m := range sm.Metrics {
			if s, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == name {
				for _, dp := range s.DataPoints {
					v += dp.Value
				}
			}
		}
	}
	return v
}
