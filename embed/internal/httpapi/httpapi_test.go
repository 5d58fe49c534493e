package httpapi

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lookalike-dev/lookalike/embed/internal/modelspec"
	"github.com/lookalike-dev/lookalike/embed/internal/registry"
	"github.com/lookalike-dev/lookalike/embed/internal/testenv"
	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"
	"github.com/lookalike-dev/lookalike/shared/server"
)

const (
	features = "mobilenetv2-int8-v1"
	logits   = "mobilenetv2-int8-logits-v1"
)

// fakeEncoder: row value i of an item is (its first byte + i + 1). Runs after
// the two warm-up runs wait on gate when it is set.
type fakeEncoder struct {
	dim  int
	gate chan struct{}
	runs atomic.Int64

	mu   sync.Mutex
	last []byte // the input of the latest run
}

func (f *fakeEncoder) Provider() string { return "fake" }
func (f *fakeEncoder) Close() error     { return nil }
func (f *fakeEncoder) Run(input []byte, n int) ([]float32, int, error) {
	if f.runs.Add(1) > 2 && f.gate != nil {
		<-f.gate
	}
	f.mu.Lock()
	f.last = append(f.last[:0], input...)
	f.mu.Unlock()
	item := len(input) / n
	out := make([]float32, 0, n*f.dim)
	for j := range n {
		for i := range f.dim {
			out = append(out, float32(input[j*item])+float32(i)+1)
		}
	}
	return out, f.dim, nil
}

type env struct {
	srv    *httptest.Server
	client *embedv1.Client
	reg    *registry.Registry
	encs   map[string]*fakeEncoder
}

func newEnv(t *testing.T, gate chan struct{}, batching registry.Batching, load bool) *env {
	t.Helper()
	ev := &env{encs: map[string]*fakeEncoder{}}
	var mu sync.Mutex
	ev.reg = registry.New(registry.Config{
		SpecDir: testenv.SpecDir(t), ModelDir: testenv.ModelDir(t), DefaultModel: features, Batching: batching, WarmupFullBatch: true,
		Models: []string{features, logits},
		NewEncoder: func(l modelspec.Loaded) (registry.Encoder, error) {
			mu.Lock()
			defer mu.Unlock()
			e := &fakeEncoder{dim: l.Spec.Dim, gate: gate}
			ev.encs[l.Spec.ID] = e
			return e, nil
		},
	})
	if load {
		if err := ev.reg.LoadDir(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	e := echo.New()
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		apierror.Write(c.Response(), server.ToAPIError(err))
	}
	New(ev.reg, Config{MaxRequestImages: 4}).Register(e)
	ev.srv = httptest.NewServer(e)
	ev.client = &embedv1.Client{BaseURL: ev.srv.URL}
	t.Cleanup(func() {
		ev.srv.Close()
		_ = ev.reg.Close(context.Background())
	})
	return ev
}

func images(n int, dt tensorv1.DType, dims ...int) tensorv1.Tensor {
	if len(dims) == 0 {
		dims = []int{3, 224, 224}
	}
	shape := append([]int{n}, dims...)
	data := make([]byte, tensorv1.Elements(shape)*dt.Size())
	item := len(data) / n
	for i := range n {
		data[i*item] = byte(10 * (i + 1))
	}
	return tensorv1.Tensor{DType: dt, Shape: shape, Data: data}
}

func TestEmbedBinary(t *testing.T) {
	ev := newEnv(t, nil, registry.Batching{}, true)
	tests := []struct {
		model   string
		n       int
		wantID  string
		wantDim int
	}{
		{"", 1, features, 1280},
		{features, 3, features, 1280},
		{logits, 4, logits, 1000},
	}
	// Binary answers declare their length (callers size one buffer from it).
	body, _ := tensorv1.Marshal(images(2, tensorv1.Float32))
	resp, err := http.Post(ev.srv.URL+embedv1.RouteEmbed, tensorv1.MediaType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(b)) || len(b) == 0 {
		t.Fatalf("status %d, Content-Length %d for %d bytes", resp.StatusCode, resp.ContentLength, len(b))
	}
	for _, tc := range tests {
		t.Run(tc.wantID, func(t *testing.T) {
			got, err := ev.client.Embed(context.Background(), images(tc.n, tensorv1.Float32), tc.model)
			if err != nil {
				t.Fatal(err)
			}
			if got.ModelID != tc.wantID || got.ModelVersion != "1" || got.Dim != tc.wantDim || len(got.Vectors) != tc.n {
				t.Fatalf("got %s v%s dim %d, %d vectors", got.ModelID, got.ModelVersion, got.Dim, len(got.Vectors))
			}
			for i, v := range got.Vectors {
				want := make([]float32, tc.wantDim)
				for j := range want {
					want[j] = float32(10*(i+1)) + float32(j) + 1
				}
				registry.Normalize(want, nil)
				for j := range want {
					if math.Abs(float64(v[j]-want[j])) > 1e-6 {
						t.Fatalf("vector %d value %d = %v, want %v", i, j, v[j], want[j])
					}
				}
			}
		})
	}
}

// A uint8 tensor (8-bit levels) reaches the model as the float32 input its
// preprocess spec makes of them: v/255, minus mean, over std, per channel.
func TestEmbedUint8Widens(t *testing.T) {
	ev := newEnv(t, nil, registry.Batching{}, true)
	levels := images(2, tensorv1.Uint8)
	for i := range levels.Data {
		levels.Data[i] = byte(i*7 + i/50176)
	}
	got, err := ev.client.Embed(context.Background(), levels, features)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Vectors) != 2 || got.Dim != 1280 {
		t.Fatalf("%d vectors of %d", len(got.Vectors), got.Dim)
	}
	enc := ev.encs[features]
	enc.mu.Lock()
	in := slices.Clone(enc.last)
	enc.mu.Unlock()
	if len(in) != 4*len(levels.Data) {
		t.Fatalf("the model got %d bytes for %d levels", len(in), len(levels.Data))
	}
	mean, std := [3]float64{0.485, 0.456, 0.406}, [3]float64{0.229, 0.224, 0.225}
	const plane = 224 * 224
	for _, i := range []int{0, 1, plane + 5, 2*plane + 77, 3*plane + 3, 6*plane - 1} {
		c := (i / plane) % 3
		want := (float64(levels.Data[i])/255 - mean[c]) / std[c]
		if v := math.Float32frombits(binary.LittleEndian.Uint32(in[4*i:])); math.Abs(float64(v)-want) > 1e-5 {
			t.Errorf("input value %d (level %d, channel %d) = %v, want %v", i, levels.Data[i], c, v, want)
		}
	}
}

func TestEmbedJSON(t *testing.T) {
	ev := newEnv(t, nil, registry.Batching{}, true)
	body, _ := tensorv1.Marshal(images(2, tensorv1.Float32))
	req, _ := http.NewRequest(http.MethodPost, ev.srv.URL+embedv1.RouteEmbed+"?model="+logits, bytes.NewReader(body))
	req.Header.Set("Content-Type", tensorv1.MediaType)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var er embedv1.EmbedResponse
	if err := json.NewDecoder(resp.Body).Decode(&er); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || er.ModelID != logits || er.Dim != 1000 || len(er.Embeddings) != 2 || len(er.Embeddings[1]) != 1000 {
		t.Fatalf("status %d, response %s dim %d with %d rows", resp.StatusCode, er.ModelID, er.Dim, len(er.Embeddings))
	}
	if resp.Header.Get(embedv1.HeaderModelID) != logits || resp.Header.Get(embedv1.HeaderModelVersion) != "1" {
		t.Errorf("model headers %v", resp.Header)
	}
}

func TestEmbedRejectsBadRequests(t *testing.T) {
	ev := newEnv(t, nil, registry.Batching{}, true)
	good, _ := tensorv1.Marshal(images(1, tensorv1.Float32))
	enc := func(tt tensorv1.Tensor) []byte { b, _ := tensorv1.Marshal(tt); return b }
	tests := []struct {
		name        string
		query       string
		contentType string
		header      [2]string
		body        []byte
		wantStatus  int
		wantCode    string
	}{
		{"unknown model", "?model=nope-v1", tensorv1.MediaType, [2]string{}, good, 404, apierror.CodeNotFound},
		{"not a tensor", "", tensorv1.MediaType, [2]string{}, []byte("hello, world"), 400, apierror.CodeInvalidArgument},
		{"empty body", "", tensorv1.MediaType, [2]string{}, nil, 400, apierror.CodeInvalidArgument},
		{"truncated tensor", "", tensorv1.MediaType, [2]string{}, good[:len(good)-7], 400, apierror.CodeInvalidArgument},
		{"uint8 tensor of the wrong size", "", tensorv1.MediaType, [2]string{}, enc(images(1, tensorv1.Uint8, 3, 224, 225)), 400, apierror.CodeInvalidArgument},
		{"float16 tensor", "", tensorv1.MediaType, [2]string{}, enc(images(1, tensorv1.Float16)), 400, apierror.CodeInvalidArgument},
		{"wrong size", "", tensorv1.MediaType, [2]string{}, enc(images(1, tensorv1.Float32, 3, 224, 225)), 400, apierror.CodeInvalidArgument},
		{"NHWC", "", tensorv1.MediaType, [2]string{}, enc(images(1, tensorv1.Float32, 224, 224, 3)), 400, apierror.CodeInvalidArgument},
		{"missing batch dim", "", tensorv1.MediaType, [2]string{}, enc(images(3, tensorv1.Float32, 224, 224)), 400, apierror.CodeInvalidArgument},
		{"too many images", "", tensorv1.MediaType, [2]string{}, enc(images(5, tensorv1.Float32)), 413, apierror.CodePayloadTooLarge},
		{"wrong content type", "", "image/jpeg", [2]string{}, good, 415, apierror.CodeUnsupportedMedia},
		{"bad timeout", "", tensorv1.MediaType, [2]string{embedv1.HeaderTimeout, "soon"}, good, 400, apierror.CodeInvalidArgument},
		{"zero timeout", "", tensorv1.MediaType, [2]string{embedv1.HeaderTimeout, "0"}, good, 400, apierror.CodeInvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, ev.srv.URL+embedv1.RouteEmbed+tc.query, bytes.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.contentType)
			if tc.header[0] != "" {
				req.Header.Set(tc.header[0], tc.header[1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			e := apierror.FromResponse(resp)
			if resp.StatusCode != tc.wantStatus || e.Code != tc.wantCode {
				t.Fatalf("got %d %s (%s), want %d %s", resp.StatusCode, e.Code, e.Message, tc.wantStatus, tc.wantCode)
			}
		})
	}
}

func TestModels(t *testing.T) {
	ev := newEnv(t, nil, registry.Batching{MaxBatch: 16}, true)
	list, err := ev.client.Models(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != logits || list[1].ID != features || !list[1].Default || list[0].Default {
		t.Fatalf("models = %+v", list)
	}
	for _, m := range list {
		if !m.Ready || m.Provider != "fake" || m.MaxBatch != 16 || m.Preprocess.Width != 224 || m.Normalization != "l2" ||
			!slices.Equal(m.WireDTypes, []string{"uint8"}) || m.WireSpec().DType != "uint8" {
			t.Errorf("model %+v", m)
		}
	}
	m, err := ev.client.Model(context.Background(), logits)
	if err != nil || m.Dim != 1000 {
		t.Fatalf("Model(%s) = %+v, %v", logits, m, err)
	}
	_, err = ev.client.Model(context.Background(), "nope-v1")
	if apierror.CodeOf(err) != apierror.CodeNotFound {
		t.Errorf("unknown model: %v", err)
	}
}

func TestNotReady(t *testing.T) {
	ev := newEnv(t, nil, registry.Batching{}, false)
	_, err := ev.client.Models(context.Background())
	if e, ok := apierror.As(err); !ok || e.Status != 503 || e.Code != apierror.CodeNotReady {
		t.Errorf("Models before loading: %v", err)
	}
	_, err = ev.client.Embed(context.Background(), images(1, tensorv1.Float32), "")
	if e, ok := apierror.As(err); !ok || e.Status != 503 || e.Code != apierror.CodeNotReady || e.RetryAfter != 1 {
		t.Errorf("Embed before loading: %v", err)
	}
}

func TestQueueFullAnswers429(t *testing.T) {
	gate := make(chan struct{})
	ev := newEnv(t, gate, registry.Batching{MaxBatch: 2, QueueImages: 2, MaxDelay: -1}, true)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	send := func(n int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := ev.client.Embed(context.Background(), images(n, tensorv1.Float32), logits)
			errs <- err
		}()
	}
	send(2) // runs, held by the gate
	waitFor(t, func() bool { return ev.encs[logits].runs.Load() == 3 })
	send(2) // fills the queue
	m, release, _ := ev.reg.Acquire(logits)
	waitFor(t, func() bool { return m.Batcher().QueueDepth() == 2 })
	release()
	_, err := ev.client.Embed(context.Background(), images(1, tensorv1.Float32), logits)
	e, ok := apierror.As(err)
	if !ok || e.Status != http.StatusTooManyRequests || e.Code != apierror.CodeOverloaded || e.RetryAfter < 1 {
		t.Fatalf("full queue: %v (%+v), want 429 overloaded with Retry-After", err, e)
	}
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("accepted request: %v", err)
		}
	}
}

func TestDeadlineAnswers504(t *testing.T) {
	gate := make(chan struct{})
	ev := newEnv(t, gate, registry.Batching{MaxBatch: 2, MaxDelay: -1}, true)
	first := make(chan error, 1)
	go func() {
		_, err := ev.client.Embed(context.Background(), images(1, tensorv1.Float32), logits)
		first <- err
	}()
	waitFor(t, func() bool { return ev.encs[logits].runs.Load() == 3 })
	body, _ := tensorv1.Marshal(images(1, tensorv1.Float32))
	req, _ := http.NewRequest(http.MethodPost, ev.srv.URL+embedv1.RouteEmbed+"?model="+logits, bytes.NewReader(body))
	req.Header.Set("Content-Type", tensorv1.MediaType)
	req.Header.Set(embedv1.HeaderTimeout, "30")
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	e := apierror.FromResponse(resp)
	if resp.StatusCode != http.StatusGatewayTimeout || e.Code != apierror.CodeDeadlineExceeded {
		t.Fatalf("got %d %s, want 504 deadline_exceeded", resp.StatusCode, e.Code)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("deadline answer took %v", d)
	}
	if resp.Header.Get(embedv1.HeaderModelID) != logits {
		t.Errorf("error response lacks the model header")
	}
	close(gate)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	m, release, _ := ev.reg.Acquire(logits)
	defer release()
	waitFor(t, func() bool { return m.Batcher().Stats().Dropped == 1 })
	if st := m.Batcher().Stats(); st.Images != 1 {
		t.Errorf("stats %+v: the expired request reached the model", st)
	}
}

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{context.DeadlineExceeded, 504, apierror.CodeDeadlineExceeded},
		{errors.New("boom"), 500, apierror.CodeInternal},
	}
	for _, tc := range tests {
		e := server.ToAPIError(embedError(tc.err, context.Background()))
		if e.Status != tc.status || e.Code != tc.code {
			t.Errorf("%v -> %d %s, want %d %s", tc.err, e.Status, e.Code, tc.status, tc.code)
		}
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	if e := server.ToAPIError(embedError(context.Canceled, canceled)); e.Status != 499 || e.Code != CodeCanceled {
		t.Errorf("canceled -> %d %s", e.Status, e.Code)
	}
	if !strings.Contains(wantsJSONCases(), "ok") {
		t.Error(wantsJSONCases())
	}
}

func wantsJSONCases() string {
	for accept, want := range map[string]bool{
		"application/json":          true,
		"":                          false,
		"*/*":                       false,
		embedv1.EmbeddingsMediaType: false,
		embedv1.EmbeddingsMediaType + ", application/json;q=0.5": false,
	} {
		if wantsJSON(accept) != want {
			return "wantsJSON(" + accept + ") wrong"
		}
	}
	return "ok"
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
