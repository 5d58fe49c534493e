package qdrantstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lookalike-dev/lookalike/search/internal/qdrantstore/fake"
	"github.com/lookalike-dev/lookalike/search/internal/store"
	"github.com/lookalike-dev/lookalike/search/internal/store/storetest"
)

const testKey = "test-api-key"

func startFake(t *testing.T) *fake.Server {
	t.Helper()
	f, err := fake.Start(testKey)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	return f
}

func newStore(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformanceAgainstFake(t *testing.T) {
	f := startFake(t)
	s := newStore(t, Config{Addr: f.Addr(), APIKey: testKey, Timeout: 30 * time.Second})
	storetest.Run(t, func(t *testing.T) store.Store { return s })
}

// TestConformanceAgainstRealQdrant runs the same suite against a real server:
// docker run -p 6333:6333 -p 6334:6334 qdrant/qdrant; QDRANT_ADDR=127.0.0.1:6334.
func TestConformanceAgainstRealQdrant(t *testing.T) {
	addr := os.Getenv("QDRANT_ADDR")
	if addr == "" {
		t.Skip("QDRANT_ADDR is not set: no real Qdrant to test against (no Docker here); the same suite ran against the in-process fake")
	}
	s := newStore(t, Config{Addr: addr, APIKey: os.Getenv("QDRANT_API_KEY"), TLS: os.Getenv("QDRANT_TLS") == "true", Timeout: 30 * time.Second})
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("QDRANT_ADDR=%s is set but not reachable: %v", addr, err)
	}
	storetest.Run(t, func(t *testing.T) store.Store { return s })
}

// rawClient talks to the fake with go-client defaults (4 MiB replies).
func rawClient(t *testing.T, f *fake.Server, key string) *qdrant.Client {
	t.Helper()
	host, p, _ := net.SplitHostPort(f.Addr())
	port, _ := strconv.Atoi(p)
	c, err := qdrant.NewClient(&qdrant.Config{Host: host, Port: port, APIKey: key, SkipCompatibilityCheck: true, PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func code(err error) codes.Code { return status.Code(err) }

// The fake must enforce Qdrant's rules, or the suite above proves nothing.
func TestFakeEnforcesQdrantRules(t *testing.T) {
	f := startFake(t)
	ctx := context.Background()
	c := rawClient(t, f, testKey)
	const dim = 1280
	if err := c.CreateCollection(ctx, &qdrant.CreateCollection{CollectionName: "rules__m", VectorsConfig: qdrant.NewVectorsConfig(&qdrant.VectorParams{Size: dim, Distance: qdrant.Distance_Cosine})}); err != nil {
		t.Fatal(err)
	}
	vec := func() []float32 {
		v := make([]float32, dim)
		for i := range v {
			v[i] = rand.Float32()
		}
		return v
	}
	var pts []*qdrant.PointStruct
	for i := range 1000 {
		pts = append(pts, &qdrant.PointStruct{Id: qdrant.NewIDNum(uint64(i + 1)), Vectors: qdrant.NewVectorsDense(vec()), Payload: qdrant.NewValueMap(map[string]any{"category": "c"})})
	}
	if _, err := c.Upsert(ctx, &qdrant.UpsertPoints{CollectionName: "rules__m", Wait: ptr(true), Points: pts}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		do   func() error
		want codes.Code
		msg  string
	}{
		{"string id refused", func() error {
			_, err := c.Upsert(ctx, &qdrant.UpsertPoints{CollectionName: "rules__m", Wait: ptr(true), Points: []*qdrant.PointStruct{{Id: qdrant.NewIDUUID("sku-1"), Vectors: qdrant.NewVectorsDense(vec())}}})
			return err
		}, codes.InvalidArgument, "Unable to parse UUID"},
		{"vector size checked", func() error {
			_, err := c.Upsert(ctx, &qdrant.UpsertPoints{CollectionName: "rules__m", Wait: ptr(true), Points: []*qdrant.PointStruct{{Id: qdrant.NewIDNum(5000), Vectors: qdrant.NewVectorsDense([]float32{1, 2, 3})}}})
			return err
		}, codes.InvalidArgument, "Vector dimension error"},
		{"filter needs a payload index", func() error {
			_, err := c.Query(ctx, &qdrant.QueryPoints{CollectionName: "rules__m", Query: qdrant.NewQueryDense(vec()), Filter: &qdrant.Filter{Must: []*qdrant.Condition{qdrant.NewMatchKeyword("category", "c")}}})
			return err
		}, codes.InvalidArgument, "Index required"},
		{"alias must exist", func() error {
			return c.UpdateAliases(ctx, []*qdrant.AliasOperations{qdrant.NewAliasDelete("nope")})
		}, codes.NotFound, "Alias"},
		{"alias target must exist", func() error {
			return c.UpdateAliases(ctx, []*qdrant.AliasOperations{qdrant.NewAliasCreate("a", "nope__m")})
		}, codes.NotFound, "doesn't exist"},
		{"reply over 4 MiB needs the raised limit", func() error {
			_, err := c.Query(ctx, &qdrant.QueryPoints{CollectionName: "rules__m", Query: qdrant.NewQueryDense(vec()), Limit: ptr(uint64(1000)), WithVectors: qdrant.NewWithVectors(true)})
			return err
		}, codes.ResourceExhausted, "larger than max"},
		{"replication factor 0 refused", func() error {
			return c.CreateCollection(ctx, &qdrant.CreateCollection{CollectionName: "zero__m", ReplicationFactor: ptr(uint32(0)),
				VectorsConfig: qdrant.NewVectorsConfig(&qdrant.VectorParams{Size: dim, Distance: qdrant.Distance_Cosine})})
		}, codes.InvalidArgument, "replication_factor"},
		{"api key required", func() error {
			_, err := rawClient(t, f, "wrong").ListCollections(ctx)
			return err
		}, codes.PermissionDenied, "api-key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			if code(err) != tc.want || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %s containing %q", err, tc.want, tc.msg)
			}
		})
	}
	// Writes without wait=true are not readable at once.
	if _, err := c.Upsert(ctx, &qdrant.UpsertPoints{CollectionName: "rules__m", Points: []*qdrant.PointStruct{{Id: qdrant.NewIDNum(9999), Vectors: qdrant.NewVectorsDense(vec())}}}); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, &qdrant.GetPoints{CollectionName: "rules__m", Ids: []*qdrant.PointId{qdrant.NewIDNum(9999)}})
	if err != nil || len(got) != 0 {
		t.Fatalf("a write without wait must not be visible at once: %v %v", got, err)
	}
}

// The store's settings are what make it pass those rules.
func TestStoreSettings(t *testing.T) {
	f := startFake(t)
	ctx := context.Background()
	tests := []struct {
		name    string
		cfg     Config
		wantErr store.Kind
	}{
		{"raised receive limit passes large replies", Config{APIKey: testKey}, 0},
		{"default 4 MiB limit fails them", Config{APIKey: testKey, MaxRecvMsgSize: 4 << 20}, store.KindUnavailable},
		{"wrong api key", Config{APIKey: "nope"}, store.KindUnavailable},
	}
	setup := newStore(t, Config{Addr: f.Addr(), APIKey: testKey})
	name := "settings__m"
	if _, err := setup.CreateCollection(ctx, "settings", "m", 1280); err != nil {
		t.Fatal(err)
	}
	var pts []store.Point
	for i := range 1000 {
		v := make([]float32, 1280)
		for j := range v {
			v[j] = rand.Float32()
		}
		pts = append(pts, store.Point{SKU: fmt.Sprintf("s%d", i), Vector: v})
	}
	// Small batches force several wait=true requests.
	small := newStore(t, Config{Addr: f.Addr(), APIKey: testKey, UpsertBatchBytes: 100_000})
	if err := small.Upsert(ctx, name, pts); err != nil {
		t.Fatal(err)
	}
	if n, _ := small.Count(ctx, name); n != 1000 {
		t.Fatalf("count after batched upsert %d", n)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Addr = f.Addr()
			s := newStore(t, tc.cfg)
			hits, err := s.Search(ctx, name, store.Query{Vector: pts[0].Vector, TopK: 1000, WithVectors: true})
			if store.KindOf(err) != tc.wantErr {
				t.Fatalf("got %d hits, err %v; want kind %d", len(hits), err, tc.wantErr)
			}
		})
	}
	// A per-call timeout bounds calls to an unreachable server.
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := lis.Addr().String()
	lis.Close()
	s := newStore(t, Config{Addr: dead, Timeout: 300 * time.Millisecond})
	start := time.Now()
	if err := s.Ping(ctx); store.KindOf(err) != store.KindUnavailable || time.Since(start) > 5*time.Second {
		t.Fatalf("ping of a dead server: %v after %v", err, time.Since(start))
	}
}

// Sharding and replication reach Qdrant at collection create; the fake
// reports them back as Qdrant does, with its defaults for unset ones.
func TestCreateCollectionSendsShardingAndReplication(t *testing.T) {
	f := startFake(t)
	ctx := context.Background()
	raw := rawClient(t, f, testKey)
	tests := []struct {
		name            string
		cfg             Config
		shards, rf, wcf uint32
	}{
		{"unset leaves Qdrant's defaults", Config{}, 1, 1, 1},
		{"prod: 3 shards, 2 replicas, both confirm", Config{ShardNumber: 3, ReplicationFactor: 2, WriteConsistencyFactor: 2}, 3, 2, 2},
		{"replicas without write consistency", Config{ReplicationFactor: 2}, 1, 2, 1},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Addr, tc.cfg.APIKey = f.Addr(), testKey
			s := newStore(t, tc.cfg)
			catalog := fmt.Sprintf("repl%d", i)
			if _, err := s.CreateCollection(ctx, catalog, "m", 8); err != nil {
				t.Fatal(err)
			}
			info, err := raw.GetCollectionInfo(ctx, catalog+"__m")
			if err != nil {
				t.Fatal(err)
			}
			p := info.GetConfig().GetParams()
			if p.GetShardNumber() != tc.shards || p.GetReplicationFactor() != tc.rf || p.GetWriteConsistencyFactor() != tc.wcf {
				t.Fatalf("created with shards %d replication %d write consistency %d, want %d %d %d",
					p.GetShardNumber(), p.GetReplicationFactor(), p.GetWriteConsistencyFactor(), tc.shards, tc.rf, tc.wcf)
			}
		})
	}
	if _, err := New(Config{Addr: f.Addr(), ReplicationFactor: 2, WriteConsistencyFactor: 3}); err == nil {
		t.Fatal("a write consistency factor above the replication factor must be refused at start")
	}
	if _, err := New(Config{Addr: f.Addr(), WriteConsistencyFactor: 2}); err == nil {
		t.Fatal("a write consistency factor of 2 with the default replication 1 must be refused at start")
	}
}

func TestPointIDIsDeterministicUUIDv5(t *testing.T) {
	tests := []struct{ a, b string }{{"sku-1", "sku-2"}, {"", " "}, {"A", "a"}}
	for _, tc := range tests {
		ida, idb := store.PointID(tc.a), store.PointID(tc.b)
		if ida != store.PointID(tc.a) || ida == idb || ida[14] != '5' {
			t.Fatalf("ids %q %q", ida, idb)
		}
	}
}
