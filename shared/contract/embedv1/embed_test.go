package embedv1

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/bufpool"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"
)

func TestVectorsRoundTrip(t *testing.T) {
	rows := [][]float32{{1, 2, 3}, {4, 5, 6}}
	got, err := UnmarshalVectors(MarshalVectors(rows), 2, 3)
	if err != nil || got[1][2] != 6 || len(got[0]) != 3 {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, tc := range []struct{ n, count, dim int }{{24, 2, 4}, {24, -1, 3}, {24, 2, 0}, {23, 2, 3}} {
		if _, err := UnmarshalVectors(make([]byte, tc.n), tc.count, tc.dim); err == nil {
			t.Errorf("%d bytes as %dx%d accepted", tc.n, tc.count, tc.dim)
		}
	}
}

func TestClientEmbed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		in, err := tensorv1.Unmarshal(body)
		if err != nil || r.URL.Query().Get(ParamModel) == "missing" {
			apierror.Write(w, apierror.New(404, apierror.CodeNotFound, "no such model"))
			return
		}
		n := in.Shape[0]
		rows := make([][]float32, n)
		for i := range rows {
			rows[i] = []float32{float32(i), 1}
		}
		w.Header().Set(HeaderModelID, "m-v1")
		w.Header().Set(HeaderModelVersion, "1")
		w.Header().Set(HeaderDim, "2")
		w.Header().Set(HeaderCount, strconv.Itoa(n))
		_, _ = w.Write(MarshalVectors(rows))
	}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL}
	tt := tensorv1.FromFloat32([]int{3, 1}, []float32{1, 2, 3})
	e, err := c.Embed(context.Background(), tt, "")
	if err != nil || e.ModelID != "m-v1" || len(e.Vectors) != 3 || e.Vectors[2][0] != 2 {
		t.Fatalf("Embed = %+v, %v", e, err)
	}
	_, err = c.Embed(context.Background(), tt, "missing")
	if apierror.CodeOf(err) != apierror.CodeNotFound {
		t.Fatalf("err = %v, want not_found", err)
	}
}

// The gateway's query path: the tensor read into a pooled buffer is sent
// on to embed from that buffer, which goes back to the pool only after the
// caller and the transport both let go of it.
func TestPooledTensorHandOff(t *testing.T) {
	want := tensorv1.FromFloat32([]int{1, 3}, []float32{1, 2, 3})
	pre := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set(preprocessv1.HeaderFacts, `{"format":"png"}`)
		want.WriteTo(w)
	}))
	defer pre.Close()
	var got []byte
	emb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = io.ReadAll(r.Body)
		w.Header().Set(HeaderModelID, "m-v1")
		w.Header().Set(HeaderDim, "1")
		w.Header().Set(HeaderCount, "1")
		w.Write(MarshalVectors([][]float32{{1}}))
	}))
	defer emb.Close()

	var pool bufpool.Pool
	ctx := context.Background()
	tensor, facts, lease, err := (&preprocessv1.Client{BaseURL: pre.URL}).PreprocessPooled(ctx, []byte("image"), nil, nil, &pool)
	if err != nil || facts.Format != "png" || lease == nil {
		t.Fatalf("PreprocessPooled = %v, %+v, lease %v", err, facts, lease)
	}
	if _, err := (&Client{BaseURL: emb.URL}).EmbedHeld(ctx, tensor, lease, ""); err != nil {
		t.Fatal(err)
	}
	wantBytes, _ := tensorv1.Marshal(want)
	if string(got) != string(wantBytes) {
		t.Fatalf("embed received %x, want %x", got, wantBytes)
	}
	if !lease.Held() {
		t.Fatal("buffer recycled before the caller released it")
	}
	lease.Release()
	deadline := time.Now().Add(5 * time.Second)
	for lease.Held() {
		if time.Now().After(deadline) {
			t.Fatal("buffer never recycled: the transport's hold was not released")
		}
		time.Sleep(time.Millisecond)
	}
}
