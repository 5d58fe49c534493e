// Package qdrantstore is the Qdrant backend of the search service, on the
// official gRPC client github.com/qdrant/go-client (pinned v1.19.0).
//
// What it relies on, and why:
//   - point ids are UUIDv5(store.PointNamespace, SKU): Qdrant accepts only
//     uint64 or UUID ids, and a deterministic id makes every upsert idempotent;
//     the SKU itself is kept in the payload (keyword-indexed);
//   - one collection per (catalog, model), cosine distance, created together
//     with payload indexes: category and brand keyword, price float, in_stock
//     bool (filters without indexes are slow, and refused in strict mode);
//   - every write uses wait=true (a 2xx means readable), in batches kept under
//     UpsertBatchBytes (~5 MB) to stay far below the request limits;
//   - replies can exceed gRPC's 4 MiB default (1000 hits with 1280-d vectors
//     is ~5 MB), so MaxCallRecvMsgSize is raised (64 MiB by default);
//   - every call runs under a per-call timeout, over a pool of connections,
//     with an optional API key and TLS;
//   - aliases switch with one UpdateAliases request (delete + create), which
//     Qdrant applies atomically.
package qdrantstore

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lookalike-dev/lookalike/search/internal/store"
)

// Config configures the Qdrant connection.
type Config struct {
	// Addr is the gRPC host:port (6334 by default).
	Addr   string
	APIKey string
	// TLS enables TLS; TLSConfig (optional) sets CAs and server name.
	TLS       bool
	TLSConfig *tls.Config
	// PoolSize is the number of gRPC connections (3 by default).
	PoolSize uint
	// Timeout bounds every call (10 s by default).
	Timeout time.Duration
	// MaxRecvMsgSize raises gRPC's 4 MiB reply limit (64 MiB by default).
	MaxRecvMsgSize int
	// UpsertBatchBytes bounds the estimated size of one upsert request (5 MB).
	UpsertBatchBytes int
	// ShardNumber, ReplicationFactor and WriteConsistencyFactor are sent
	// when a collection is created; 0 leaves Qdrant's default (one shard
	// per peer, replication 1, write consistency 1). Existing collections
	// keep the values they were created with.
	ShardNumber            uint32
	ReplicationFactor      uint32
	WriteConsistencyFactor uint32
}

// Store is the Qdrant backend.
type Store struct {
	cfg    Config
	client *qdrant.Client
}

var _ store.Store = (*Store)(nil)

// New connects (lazily: gRPC dials on first use) to Qdrant.
func New(cfg Config) (*Store, error) {
	if cfg.PoolSize == 0 {
		cfg.PoolSize = 3
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxRecvMsgSize <= 0 {
		cfg.MaxRecvMsgSize = 64 << 20
	}
	if cfg.UpsertBatchBytes <= 0 {
		cfg.UpsertBatchBytes = 5_000_000
	}
	if cfg.WriteConsistencyFactor > max(cfg.ReplicationFactor, 1) {
		return nil, fmt.Errorf("qdrant write consistency factor %d exceeds the replication factor %d: no write could succeed",
			cfg.WriteConsistencyFactor, max(cfg.ReplicationFactor, 1))
	}
	host, portS, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("qdrant addr %q: %w", cfg.Addr, err)
	}
	port, err := strconv.Atoi(portS)
	if err != nil {
		return nil, fmt.Errorf("qdrant port %q: %w", portS, err)
	}
	client, err := qdrant.NewClient(&qdrant.Config{
		Host:                   host,
		Port:                   port,
		APIKey:                 cfg.APIKey,
		UseTLS:                 cfg.TLS,
		TLSConfig:              cfg.TLSConfig,
		PoolSize:               cfg.PoolSize,
		SkipCompatibilityCheck: true, // readiness checks the server instead of blocking here
		GrpcOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(cfg.MaxRecvMsgSize),
			grpc.MaxCallSendMsgSize(cfg.MaxRecvMsgSize),
		)},
	})
	if err != nil {
		return nil, fmt.Errorf("creating qdrant client: %w", err)
	}
	return &Store{cfg: cfg, client: client}, nil
}

// Backend names the backend.
func (s *Store) Backend() string { return "qdrant" }

// Close closes the connections.
func (s *Store) Close() error { return s.client.Close() }

func (s *Store) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.Timeout)
}

// classify maps gRPC errors to store kinds.
func classify(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf(format, args...)
	st, ok := status.FromError(err)
	if !ok {
		var rl *qdrant.QdrantResourceExhaustedError
		if errors.As(err, &rl) {
			return store.Unavailable(err, "%s: rate limited", msg)
		}
		return store.Unavailable(err, "%s", msg)
	}
	switch st.Code() {
	case codes.NotFound:
		return &store.Error{Kind: store.KindNotFound, Msg: msg + ": " + st.Message()}
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		if strings.Contains(st.Message(), "already exists") {
			return &store.Error{Kind: store.KindConflict, Msg: msg + ": " + st.Message()}
		}
		return &store.Error{Kind: store.KindInvalid, Msg: msg + ": " + st.Message()}
	case codes.AlreadyExists:
		return &store.Error{Kind: store.KindConflict, Msg: msg + ": " + st.Message()}
	}
	return store.Unavailable(err, "%s", msg)
}

// Ping checks the server answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	if _, err := s.client.HealthCheck(ctx); err != nil {
		return store.Unavailable(err, "qdrant health check")
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// optional is nil for 0, so Qdrant applies its own default.
func optional(v uint32) *uint32 {
	if v == 0 {
		return nil
	}
	return &v
}

// payloadIndexes are created with every collection.
var payloadIndexes = []struct {
	field string
	typ   qdrant.FieldType
}{
	{store.KeySKU, qdrant.FieldType_FieldTypeKeyword},
	{store.KeyCategory, qdrant.FieldType_FieldTypeKeyword},
	{store.KeyBrand, qdrant.FieldType_FieldTypeKeyword},
	{store.KeyPrice, qdrant.FieldType_FieldTypeFloat},
	{store.KeyInStock, qdrant.FieldType_FieldTypeBool},
}

// CreateCollection creates the collection and its payload indexes.
func (s *Store) CreateCollection(ctx context.Context, catalog, model string, dim int) (store.Collection, error) {
	name := catalog + "__" + model
	if _, _, ok := store.SplitCollection(name); !ok || dim <= 0 {
		return store.Collection{}, store.Invalid("invalid collection %q dim %d", name, dim)
	}
	if c, err := s.Collection(ctx, name); err == nil {
		if c.Dim != dim {
			return store.Collection{}, store.Conflict("collection %s exists with dim %d, not %d", name, c.Dim, dim)
		}
		return c, s.ensureIndexes(ctx, name)
	} else if store.KindOf(err) != store.KindNotFound {
		return store.Collection{}, err
	}
	cctx, cancel := s.call(ctx)
	err := s.client.CreateCollection(cctx, &qdrant.CreateCollection{
		CollectionName:         name,
		VectorsConfig:          qdrant.NewVectorsConfig(&qdrant.VectorParams{Size: uint64(dim), Distance: qdrant.Distance_Cosine}),
		Metadata:               qdrant.NewValueMap(map[string]any{"catalog": catalog, "model": model, "dim": dim}),
		ShardNumber:            optional(s.cfg.ShardNumber),
		ReplicationFactor:      optional(s.cfg.ReplicationFactor),
		WriteConsistencyFactor: optional(s.cfg.WriteConsistencyFactor),
	})
	cancel()
	if err := classify(err, "creating collection %s", name); err != nil && store.KindOf(err) != store.KindConflict {
		return store.Collection{}, err
	}
	if err := s.ensureIndexes(ctx, name); err != nil {
		return store.Collection{}, err
	}
	return s.Collection(ctx, name)
}

func (s *Store) ensureIndexes(ctx context.Context, name string) error {
	for _, ix := range payloadIndexes {
		cctx, cancel := s.call(ctx)
		_, err := s.client.CreateFieldIndex(cctx, &qdrant.CreateFieldIndexCollection{
			CollectionName: name, Wait: ptr(true), FieldName: ix.field, FieldType: ptr(ix.typ),
		})
		cancel()
		if err != nil {
			return classify(err, "creating payload index %s on %s", ix.field, name)
		}
	}
	return nil
}

// DropCollection deletes a collection no alias points at.
func (s *Store) DropCollection(ctx context.Context, name string) error {
	if _, err := s.Collection(ctx, name); err != nil {
		return err
	}
	aliases, err := s.Aliases(ctx)
	if err != nil {
		return err
	}
	for a, c := range aliases {
		if c == name {
			return store.Conflict("alias %q points at collection %s; switch or delete it first", a, name)
		}
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	return classify(s.client.DeleteCollection(cctx, name), "dropping collection %s", name)
}

// Collection describes one collection.
func (s *Store) Collection(ctx context.Context, name string) (store.Collection, error) {
	catalog, model, ok := store.SplitCollection(name)
	if !ok {
		return store.Collection{}, store.NotFound("collection %q not found", name)
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	info, err := s.client.GetCollectionInfo(cctx, name)
	if err != nil {
		return store.Collection{}, classify(err, "collection %s", name)
	}
	dim := int(info.GetConfig().GetParams().GetVectorsConfig().GetParams().GetSize())
	return store.Collection{Name: name, Catalog: catalog, Model: model, Dim: dim, Count: int64(info.GetPointsCount())}, nil
}

// Collections lists the catalog collections (names catalog__model).
func (s *Store) Collections(ctx context.Context) ([]store.Collection, error) {
	cctx, cancel := s.call(ctx)
	names, err := s.client.ListCollections(cctx)
	cancel()
	if err != nil {
		return nil, classify(err, "listing collections")
	}
	sort.Strings(names)
	out := []store.Collection{}
	for _, n := range names {
		if _, _, ok := store.SplitCollection(n); !ok {
			continue
		}
		c, err := s.Collection(ctx, n)
		if store.KindOf(err) == store.KindNotFound {
			continue // dropped meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// Upsert writes points with wait=true in batches under UpsertBatchBytes.
func (s *Store) Upsert(ctx context.Context, name string, points []store.Point) error {
	c, err := s.Collection(ctx, name)
	if err != nil {
		return err
	}
	var batch []*qdrant.PointStruct
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		cctx, cancel := s.call(ctx)
		defer cancel()
		_, err := s.client.Upsert(cctx, &qdrant.UpsertPoints{CollectionName: name, Wait: ptr(true), Points: batch})
		batch, size = nil, 0
		return classify(err, "upserting into %s", name)
	}
	structs := make([]*qdrant.PointStruct, len(points))
	sizes := make([]int, len(points))
	for i, p := range points {
		if p.SKU == "" {
			return store.Invalid("point %d has an empty sku", i)
		}
		if len(p.Vector) != c.Dim {
			return store.Invalid("point %q: vector dim %d, collection %s has dim %d", p.SKU, len(p.Vector), name, c.Dim)
		}
		if !finiteNonZero(p.Vector) {
			return store.Invalid("point %q: vector is zero or not finite", p.SKU)
		}
		payload := make(map[string]any, len(p.Payload)+1)
		for k, v := range p.Payload {
			payload[k] = v
		}
		payload[store.KeySKU] = p.SKU
		pv, err := qdrant.TryValueMap(payload)
		if err != nil {
			return store.Invalid("payload of %q: %v", p.SKU, err)
		}
		pj, _ := json.Marshal(payload)
		structs[i] = &qdrant.PointStruct{Id: qdrant.NewIDUUID(store.PointID(p.SKU)), Vectors: qdrant.NewVectorsDense(p.Vector), Payload: pv}
		sizes[i] = 4*len(p.Vector) + 2*len(pj) + 64
	}
	for i, ps := range structs {
		if size+sizes[i] > s.cfg.UpsertBatchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		batch = append(batch, ps)
		size += sizes[i]
	}
	return flush()
}

func finiteNonZero(v []float32) bool {
	nz := false
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return false
		}
		if x != 0 {
			nz = true
		}
	}
	return nz
}

// Get returns one point.
func (s *Store) Get(ctx context.Context, name, sku string) (store.Point, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	res, err := s.client.Get(cctx, &qdrant.GetPoints{
		CollectionName: name, Ids: []*qdrant.PointId{qdrant.NewIDUUID(store.PointID(sku))},
		WithPayload: qdrant.NewWithPayload(true), WithVectors: qdrant.NewWithVectors(true),
	})
	if err != nil {
		return store.Point{}, classify(err, "getting %q from %s", sku, name)
	}
	if len(res) == 0 {
		return store.Point{}, store.NotFound("sku %q not found in %s", sku, name)
	}
	payload := payloadMap(res[0].GetPayload())
	return store.Point{SKU: sku, Vector: vectorOf(res[0].GetVectors()), Payload: payload}, nil
}

// Delete removes a SKU (absent is fine) with wait=true.
func (s *Store) Delete(ctx context.Context, name, sku string) error {
	cctx, cancel := s.call(ctx)
	defer cancel()
	_, err := s.client.Delete(cctx, &qdrant.DeletePoints{
		CollectionName: name, Wait: ptr(true),
		Points: qdrant.NewPointsSelector(qdrant.NewIDUUID(store.PointID(sku))),
	})
	return classify(err, "deleting %q from %s", sku, name)
}

// Count counts exactly.
func (s *Store) Count(ctx context.Context, name string) (int64, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	n, err := s.client.Count(cctx, &qdrant.CountPoints{CollectionName: name, Exact: ptr(true)})
	if err != nil {
		return 0, classify(err, "counting %s", name)
	}
	return int64(n), nil
}

// Filter converts a search filter to Qdrant conditions on indexed fields.
func Filter(q store.Query) *qdrant.Filter {
	f := &qdrant.Filter{}
	if q.Filter != nil {
		if len(q.Filter.Category) > 0 {
			f.Must = append(f.Must, qdrant.NewMatchKeywords(store.KeyCategory, q.Filter.Category...))
		}
		if len(q.Filter.Brand) > 0 {
			f.Must = append(f.Must, qdrant.NewMatchKeywords(store.KeyBrand, q.Filter.Brand...))
		}
		if q.Filter.PriceMin != nil || q.Filter.PriceMax != nil {
			f.Must = append(f.Must, qdrant.NewRange(store.KeyPrice, &qdrant.Range{Gte: q.Filter.PriceMin, Lte: q.Filter.PriceMax}))
		}
		if q.Filter.InStock != nil {
			f.Must = append(f.Must, qdrant.NewMatchBool(store.KeyInStock, *q.Filter.InStock))
		}
	}
	if q.ExcludeSKU != "" {
		f.MustNot = append(f.MustNot, qdrant.NewHasID(qdrant.NewIDUUID(store.PointID(q.ExcludeSKU))))
	}
	if len(f.Must) == 0 && len(f.MustNot) == 0 {
		return nil
	}
	return f
}

func (s *Store) query(ctx context.Context, name string, query *qdrant.Query, q store.Query) ([]store.Hit, error) {
	if q.TopK <= 0 {
		return []store.Hit{}, nil
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	res, err := s.client.Query(cctx, &qdrant.QueryPoints{
		CollectionName: name,
		Query:          query,
		Filter:         Filter(q),
		ScoreThreshold: q.MinScore,
		Limit:          ptr(uint64(q.TopK)),
		Offset:         ptr(uint64(q.Offset)),
		WithPayload:    qdrant.NewWithPayload(true),
		WithVectors:    qdrant.NewWithVectors(q.WithVectors),
	})
	if err != nil {
		return nil, classify(err, "querying %s", name)
	}
	hits := make([]store.Hit, 0, len(res))
	for _, p := range res {
		payload := payloadMap(p.GetPayload())
		sku, _ := payload[store.KeySKU].(string)
		h := store.Hit{SKU: sku, Score: p.GetScore(), Payload: payload}
		if q.WithVectors {
			h.Vector = vectorOf(p.GetVectors())
		}
		hits = append(hits, h)
	}
	return hits, nil
}

// Search runs a nearest query.
func (s *Store) Search(ctx context.Context, name string, q store.Query) ([]store.Hit, error) {
	c, err := s.Collection(ctx, name)
	if err != nil {
		return nil, err
	}
	if len(q.Vector) != c.Dim {
		return nil, store.Invalid("query dim %d, collection %s has dim %d", len(q.Vector), name, c.Dim)
	}
	if !finiteNonZero(q.Vector) {
		return nil, store.Invalid("query vector is zero or not finite")
	}
	return s.query(ctx, name, qdrant.NewQueryDense(q.Vector), q)
}

// Recommend queries by the stored point of sku (Qdrant's query by id),
// leaving it out with a must_not has_id condition.
func (s *Store) Recommend(ctx context.Context, name, sku string, q store.Query) ([]store.Hit, error) {
	cctx, cancel := s.call(ctx)
	res, err := s.client.Get(cctx, &qdrant.GetPoints{CollectionName: name, Ids: []*qdrant.PointId{qdrant.NewIDUUID(store.PointID(sku))}})
	cancel()
	if err != nil {
		return nil, classify(err, "looking up %q in %s", sku, name)
	}
	if len(res) == 0 {
		return nil, store.NotFound("sku %q not found in %s", sku, name)
	}
	q.ExcludeSKU = sku
	return s.query(ctx, name, qdrant.NewQueryID(qdrant.NewIDUUID(store.PointID(sku))), q)
}

// Aliases lists alias -> collection.
func (s *Store) Aliases(ctx context.Context) (map[string]string, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	list, err := s.client.ListAliases(cctx)
	if err != nil {
		return nil, classify(err, "listing aliases")
	}
	out := make(map[string]string, len(list))
	for _, a := range list {
		out[a.GetAliasName()] = a.GetCollectionName()
	}
	return out, nil
}

// Alias resolves an alias.
func (s *Store) Alias(ctx context.Context, alias string) (string, error) {
	all, err := s.Aliases(ctx)
	if err != nil {
		return "", err
	}
	c, ok := all[alias]
	if !ok {
		return "", store.NotFound("alias %q not found", alias)
	}
	return c, nil
}

// SwitchAlias replaces alias in one UpdateAliases request (atomic in Qdrant).
func (s *Store) SwitchAlias(ctx context.Context, alias, collection string) error {
	if _, err := s.Collection(ctx, collection); err != nil {
		return err
	}
	if _, err := s.Collection(ctx, alias); err == nil {
		return store.Conflict("alias %q would shadow a collection", alias)
	}
	all, err := s.Aliases(ctx)
	if err != nil {
		return err
	}
	var ops []*qdrant.AliasOperations
	if _, ok := all[alias]; ok {
		ops = append(ops, qdrant.NewAliasDelete(alias))
	}
	ops = append(ops, qdrant.NewAliasCreate(alias, collection))
	cctx, cancel := s.call(ctx)
	defer cancel()
	return classify(s.client.UpdateAliases(cctx, ops), "switching alias %s to %s", alias, collection)
}

// DeleteAlias removes an alias.
func (s *Store) DeleteAlias(ctx context.Context, alias string) error {
	if _, err := s.Alias(ctx, alias); err != nil {
		return err
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	return classify(s.client.UpdateAliases(cctx, []*qdrant.AliasOperations{qdrant.NewAliasDelete(alias)}), "deleting alias %s", alias)
}

func vectorOf(v *qdrant.VectorsOutput) []float32 {
	vo := v.GetVector()
	if d := vo.GetDense(); d != nil {
		return d.GetData()
	}
	//lint:ignore SA1019 Qdrant servers before 1.12 still answer in the deprecated field
	return vo.GetData()
}

// payloadMap converts a Qdrant payload to JSON-like Go values (numbers as
// float64, like encoding/json).
func payloadMap(m map[string]*qdrant.Value) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = ValueOf(v)
	}
	return out
}

// ValueOf converts one Qdrant value.
func ValueOf(v *qdrant.Value) any {
	switch k := v.GetKind().(type) {
	case *qdrant.Value_BoolValue:
		return k.BoolValue
	case *qdrant.Value_DoubleValue:
		return k.DoubleValue
	case *qdrant.Value_IntegerValue:
		return float64(k.IntegerValue)
	case *qdrant.Value_StringValue:
		return k.StringValue
	case *qdrant.Value_StructValue:
		return payloadMap(k.StructValue.GetFields())
	case *qdrant.Value_ListValue:
		out := make([]any, 0, len(k.ListValue.GetValues()))
		for _, e := range k.ListValue.GetValues() {
			out = append(out, ValueOf(e))
		}
		return out
	}
	return nil
}
