package registry

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/lookalike-dev/lookalike/embed/internal/modelspec"
	"github.com/lookalike-dev/lookalike/embed/internal/testenv"
)

// fakeEncoder returns, for each item, a row whose value i is (first float
// byte of the item + i + 1): distinct per input and never zero.
type fakeEncoder struct {
	dim    int
	gate   chan struct{}
	closed atomic.Bool
	runs   atomic.Int64
}

func (f *fakeEncoder) Provider() string { return "fake" }
func (f *fakeEncoder) Close() error     { f.closed.Store(true); return nil }
func (f *fakeEncoder) Run(input []byte, n int) ([]float32, int, error) {
	if f.runs.Add(1) > 2 && f.gate != nil { // warm-up runs pass
		<-f.gate
	}
	item := len(input) / n
	out := make([]float32, 0, n*f.dim)
	for j := range n {
		for i := range f.dim {
			out = append(out, float32(input[j*item])+float32(i)+1)
		}
	}
	return out, f.dim, nil
}

type factory struct {
	mu      sync.Mutex
	made    map[string]*fakeEncoder
	calls   int
	dimSkew int
	gate    chan struct{}
}

func (f *factory) new(l modelspec.Loaded) (Encoder, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.made == nil {
		f.made = map[string]*fakeEncoder{}
	}
	f.calls++
	e := &fakeEncoder{dim: l.Spec.Dim + f.dimSkew, gate: f.gate}
	f.made[l.Spec.ID] = e
	return e, nil
}

func committed(t *testing.T) map[string]modelspec.Spec {
	t.Helper()
	specs, err := modelspec.ReadDir(testenv.SpecDir(t))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]modelspec.Spec{}
	for _, s := range specs {
		m[s.ID] = s
	}
	return m
}

const (
	features = "mobilenetv2-int8-v1"
	logits   = "mobilenetv2-int8-logits-v1"
)

func newRegistry(t *testing.T, f *factory, def string) *Registry {
	t.Helper()
	r := New(Config{ModelDir: testenv.ModelDir(t), SpecDir: testenv.SpecDir(t), DefaultModel: def, NewEncoder: f.new, WarmupFullBatch: true,
		Batching: Batching{MaxBatch: 8, MaxDelay: time.Millisecond}})
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	return r
}

func item(b byte, s modelspec.Spec) []byte {
	in := make([]byte, s.ItemBytes())
	in[0] = b
	return in
}

func TestSyncServesSeveralModels(t *testing.T) {
	f := &factory{}
	r := newRegistry(t, f, features)
	if _, _, err := r.Acquire(""); !errors.Is(err, ErrNotLoaded) {
		t.Fatalf("Acquire before loading: %v, want ErrNotLoaded", err)
	}
	if err := r.LoadDir(context.Background()); err != nil {
		t.Fatal(err)
	}
	list := r.List()
	if len(list) < 2 {
		t.Fatalf("List = %+v, want both committed models", list)
	}
	for _, ms := range list {
		if !ms.Ready || ms.Provider != "fake" || ms.Default != (ms.ID == features) || ms.MaxBatch != 8 {
			t.Errorf("published spec %+v", ms)
		}
	}
	tests := []struct {
		id      string
		wantID  string
		wantDim int
	}{
		{"", features, 1280},
		{features, features, 1280},
		{logits, logits, 1000},
	}
	for _, tc := range tests {
		t.Run("model "+tc.id, func(t *testing.T) {
			m, release, err := r.Acquire(tc.id)
			if err != nil {
				t.Fatal(err)
			}
			defer release()
			if m.Spec().ID != tc.wantID {
				t.Fatalf("got model %s, want %s", m.Spec().ID, tc.wantID)
			}
			in := append(item(3, m.Spec()), item(9, m.Spec())...)
			rows, err := m.Embed(context.Background(), in, 2)
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != 2 || len(rows[0]) != tc.wantDim {
				t.Fatalf("got %d rows of %d", len(rows), len(rows[0]))
			}
			for _, row := range rows {
				if n := norm(row); math.Abs(n-1) > 1e-5 {
					t.Errorf("row norm %v, want 1", n)
				}
			}
			if rows[0][0] == rows[1][0] {
				t.Error("different inputs gave equal rows")
			}
		})
	}
	if _, _, err := r.Acquire("nope-v9"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Acquire(unknown): %v, want ErrNotFound", err)
	}
}

func TestSyncRules(t *testing.T) {
	specs := committed(t)
	bad := specs[features]
	bad.SHA256 = strings.Repeat("0", 64)
	tests := []struct {
		name    string
		def     string
		specs   []modelspec.Spec
		skew    int
		wantErr string
	}{
		{"single model needs no default", "", []modelspec.Spec{specs[logits]}, 0, ""},
		{"several models need a default", "", []modelspec.Spec{specs[logits], specs[features]}, 0, "no default"},
		{"default must be loaded", "other-v1", []modelspec.Spec{specs[logits]}, 0, "not among"},
		{"no specs", features, nil, 0, "no model specs"},
		{"duplicate id", logits, []modelspec.Spec{specs[logits], specs[logits]}, 0, "twice"},
		{"bad file", features, []modelspec.Spec{bad}, 0, "sha256"},
		{"warm-up checks the dim", logits, []modelspec.Spec{specs[logits]}, 1, "dim 1000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &factory{dimSkew: tc.skew}
			r := newRegistry(t, f, tc.def)
			err := r.Sync(context.Background(), tc.specs)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Sync error %v, want one containing %q", err, tc.wantErr)
			}
			if r.Ready() {
				t.Error("registry ready after a failed first load")
			}
			for _, e := range f.made {
				if !e.closed.Load() {
					t.Error("an encoder of a failed load was not closed")
				}
			}
		})
	}
}

func TestReloadKeepsUnchangedAndRollsBackOnFailure(t *testing.T) {
	specs := committed(t)
	f := &factory{}
	r := newRegistry(t, f, features)
	both := []modelspec.Spec{specs[features], specs[logits]}
	if err := r.Sync(context.Background(), both); err != nil {
		t.Fatal(err)
	}
	m1, rel, _ := r.Acquire(features)
	rel()
	if err := r.Sync(context.Background(), both); err != nil {
		t.Fatal(err)
	}
	m2, rel, _ := r.Acquire(features)
	rel()
	if m1 != m2 || f.calls != 2 {
		t.Errorf("an unchanged reload rebuilt models (calls %d)", f.calls)
	}
	bad := specs[logits]
	bad.SHA256 = strings.Repeat("0", 64)
	if err := r.Sync(context.Background(), []modelspec.Spec{specs[features], bad}); err == nil {
		t.Fatal("Sync with a broken spec succeeded")
	}
	if len(r.List()) != 2 {
		t.Errorf("a failed reload changed the loaded set: %v", r.List())
	}
	// Changing a spec replaces that model only.
	changed := specs[logits]
	changed.Version = "2"
	if err := r.Sync(context.Background(), []modelspec.Spec{specs[features], changed}); err != nil {
		t.Fatal(err)
	}
	m3, rel, _ := r.Acquire(logits)
	rel()
	if m3.Spec().Version != "2" {
		t.Errorf("reload kept version %s", m3.Spec().Version)
	}
}

func TestUnloadWaitsForInFlightWork(t *testing.T) {
	specs := committed(t)
	f := &factory{gate: make(chan struct{})}
	r := newRegistry(t, f, features)
	if err := r.Sync(context.Background(), []modelspec.Spec{specs[features], specs[logits]}); err != nil {
		t.Fatal(err)
	}
	m, release, err := r.Acquire(logits)
	if err != nil {
		t.Fatal(err)
	}
	result := make(chan error, 1)
	go func() {
		defer release()
		rows, err := m.Embed(context.Background(), item(5, m.Spec()), 1)
		if err == nil && len(rows) != 1 {
			err = errors.New("no row")
		}
		result <- err
	}()
	// Wait until the request is inside the model.
	f.mu.Lock()
	enc := f.made[logits]
	f.mu.Unlock()
	for enc.runs.Load() < 3 {
		time.Sleep(time.Millisecond)
	}
	synced := make(chan error, 1)
	go func() { synced <- r.Sync(context.Background(), []modelspec.Spec{specs[features]}) }()
	// The model leaves the map at once...
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, rel, err := r.Acquire(logits)
		if errors.Is(err, ErrNotFound) {
			break
		}
		if err == nil {
			rel()
		}
		if time.Now().After(deadline) {
			t.Fatal("unloaded model still served")
		}
		time.Sleep(time.Millisecond)
	}
	// ...but is not closed while its request runs.
	select {
	case err := <-synced:
		t.Fatalf("Sync returned (%v) while a request was in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	if enc.closed.Load() {
		t.Fatal("encoder closed under an in-flight request")
	}
	close(f.gate)
	if err := <-result; err != nil {
		t.Errorf("in-flight request failed across the reload: %v", err)
	}
	if err := <-synced; err != nil {
		t.Fatal(err)
	}
	if !enc.closed.Load() {
		t.Error("unloaded encoder not closed")
	}
}

func TestLoadDirFilterAndCentring(t *testing.T) {
	specs := committed(t)
	dir := t.TempDir()
	centred := specs[features]
	centred.ID = "centred-v1"
	centred.Normalization = modelspec.NormL2Center
	centred.MeanFile = "mean.lkt"
	mean := make([]float32, 1280)
	for i := range mean {
		mean[i] = float32(i) / 2
	}
	if err := modelspec.WriteMean(filepath.Join(dir, "mean.lkt"), mean); err != nil {
		t.Fatal(err)
	}
	for _, s := range []modelspec.Spec{centred, specs[logits]} {
		b, err := yaml.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, s.ID+".yaml"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		models  []string
		wantErr string
		want    []string
	}{
		{"only the listed", []string{"centred-v1"}, "", []string{"centred-v1"}},
		{"unknown id", []string{"centred-v1", "missing-v1"}, "missing-v1", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := New(Config{ModelDir: testenv.ModelDir(t), SpecDir: dir, Models: tc.models, DefaultModel: "centred-v1", NewEncoder: (&factory{}).new})
			defer r.Close(context.Background())
			err := r.LoadDir(context.Background())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("LoadDir error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range r.List() {
				got = append(got, m.ID)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("loaded %v, want %v", got, tc.want)
			}
			m, release, _ := r.Acquire("")
			defer release()
			rows, err := m.Embed(context.Background(), item(7, m.Spec()), 1)
			if err != nil {
				t.Fatal(err)
			}
			// raw[i] = 7+i+1, centred = raw - i/2, then L2.
			want := make([]float32, 1280)
			for i := range want {
				want[i] = 8 + float32(i) - float32(i)/2
			}
			Normalize(want, nil)
			for i := range want {
				if math.Abs(float64(rows[0][i]-want[i])) > 1e-6 {
					t.Fatalf("value %d = %v, want %v", i, rows[0][i], want[i])
				}
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		name    string
		v, mean []float32
		want    []float32
	}{
		{"l2", []float32{3, 4}, nil, []float32{0.6, 0.8}},
		{"centre then l2", []float32{4, 6}, []float32{1, 2}, []float32{0.6, 0.8}},
		{"zero stays zero", []float32{0, 0}, nil, []float32{0, 0}},
		{"centred to zero", []float32{1, 2}, []float32{1, 2}, []float32{0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := append([]float32(nil), tc.v...)
			Normalize(v, tc.mean)
			for i := range v {
				if math.Abs(float64(v[i]-tc.want[i])) > 1e-6 {
					t.Fatalf("Normalize(%v, %v) = %v, want %v", tc.v, tc.mean, v, tc.want)
				}
			}
		})
	}
}

func norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

func TestBatchingWorkersByProvider(t *testing.T) {
	tests := []struct {
		b        Batching
		provider string
		want     int
	}{
		{Batching{CPUWorkers: 2}, "cpu", 2},
		{Batching{CPUWorkers: 2}, "cuda", 1},
		{Batching{CPUWorkers: 2}, "tensorrt", 1},
		{Batching{CPUWorkers: 0}, "cpu", 1},
		{Batching{Workers: 3, CPUWorkers: 2}, "cpu", 3},
		{Batching{Workers: 3, CPUWorkers: 2}, "cuda", 3},
	}
	for _, tt := range tests {
		if got := tt.b.workers(tt.provider); got != tt.want {
			t.Errorf("%+v on %s: %d workers, want %d", tt.b, tt.provider, got, tt.want)
		}
	}
	// The registry applies it to each model's batcher.
	f := &factory{}
	r := New(Config{ModelDir: testenv.ModelDir(t), SpecDir: testenv.SpecDir(t), DefaultModel: features, NewEncoder: f.new,
		Batching: Batching{MaxBatch: 8, CPUWorkers: 4}})
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	if err := r.LoadDir(context.Background()); err != nil {
		t.Fatal(err)
	}
	m, release, err := r.Acquire("")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if got := m.Batcher().Config().Workers; got != 1 {
		t.Errorf("a %q encoder got %d workers, want 1 (CPUWorkers is for the CPU provider only)", "fake", got)
	}
}
