// Package qdrantfake is an in-process Qdrant for tests, built on the
// go-client's generated gRPC server interfaces. It keeps data in memory and
// enforces the rules of a real Qdrant that clients trip over:
//   - point ids are uint64 or UUID only ("Unable to parse UUID");
//   - vector size must match the collection ("Vector dimension error");
//   - a filter on a payload field needs a payload index of a fitting type
//     (Qdrant's strict mode: "Index required but not found");
//   - aliases must exist to be deleted, and target existing collections; a
//     batch of alias actions applies atomically; names resolve aliases;
//   - writes without wait=true are applied later, so a client that does not
//     wait reads stale data;
//   - replies over gRPC's 4 MiB default fail unless the client raised
//     MaxCallRecvMsgSize (the server sends up to 256 MiB).
package fake

import (
	"context"
	"fmt"
	"math"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type point struct {
	id      string
	vector  []float32
	payload map[string]*qdrant.Value
}

type collection struct {
	dim     int
	points  map[string]*point
	indexes map[string]qdrant.FieldType
	meta    map[string]*qdrant.Value
	// the sharding and replication asked for at create (Qdrant's defaults when absent)
	shards, replication, writeConsistency uint32
}

// Server is a fake Qdrant.
type Server struct {
	qdrant.UnimplementedQdrantServer

	mu      sync.RWMutex
	colls   map[string]*collection
	aliases map[string]string
	// APIKey, when set, is required in the "api-key" metadata.
	APIKey string
	// LateWriteDelay is how long a write without wait=true stays invisible.
	LateWriteDelay time.Duration

	grpc *grpc.Server
	lis  net.Listener
}

// Start serves a fake Qdrant on a loopback port; Addr() names it.
func Start(apiKey string) (*Server, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening: %w", err)
	}
	s := &Server{colls: map[string]*collection{}, aliases: map[string]string{}, APIKey: apiKey, LateWriteDelay: 200 * time.Millisecond, lis: lis}
	s.grpc = grpc.NewServer(grpc.MaxSendMsgSize(256<<20), grpc.MaxRecvMsgSize(256<<20), grpc.UnaryInterceptor(s.auth))
	qdrant.RegisterQdrantServer(s.grpc, s)
	qdrant.RegisterCollectionsServer(s.grpc, collSvc{Server: s})
	qdrant.RegisterPointsServer(s.grpc, pointsSvc{Server: s})
	go s.grpc.Serve(lis)
	return s, nil
}

type collSvc struct {
	*Server
	qdrant.UnimplementedCollectionsServer
}

type pointsSvc struct {
	*Server
	qdrant.UnimplementedPointsServer
}

// Addr is host:port of the gRPC listener.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Stop stops serving.
func (s *Server) Stop() { s.grpc.Stop() }

func (s *Server) auth(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if s.APIKey != "" {
		md := metadataFrom(ctx)
		if md != s.APIKey {
			return nil, status.Error(codes.PermissionDenied, "Invalid api-key")
		}
	}
	return h(ctx, req)
}

func notFound(name string) error {
	return status.Errorf(codes.NotFound, "Not found: Collection `%s` doesn't exist!", name)
}

// resolve follows an alias (caller holds mu).
func (s *Server) resolve(name string) (*collection, error) {
	if target, ok := s.aliases[name]; ok {
		name = target
	}
	c, ok := s.colls[name]
	if !ok {
		return nil, notFound(name)
	}
	return c, nil
}

// HealthCheck answers like Qdrant.
func (s *Server) HealthCheck(ctx context.Context, _ *qdrant.HealthCheckRequest) (*qdrant.HealthCheckReply, error) {
	return &qdrant.HealthCheckReply{Title: "qdrant fake", Version: "1.19.0"}, nil
}

// Create creates a collection with a single dense cosine vector.
func (s collSvc) Create(ctx context.Context, r *qdrant.CreateCollection) (*qdrant.CollectionOperationResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.colls[r.GetCollectionName()]; ok {
		return nil, status.Errorf(codes.InvalidArgument, "Wrong input: Collection `%s` already exists!", r.GetCollectionName())
	}
	p := r.GetVectorsConfig().GetParams()
	if p == nil || p.GetSize() == 0 {
		return nil, status.Error(codes.InvalidArgument, "Wrong input: the fake supports one unnamed dense vector")
	}
	if p.GetDistance() != qdrant.Distance_Cosine {
		return nil, status.Error(codes.InvalidArgument, "Wrong input: the fake supports cosine distance only")
	}
	// Qdrant validates each of these as at least 1 when present.
	for field, v := range map[string]*uint32{"shard_number": r.ShardNumber, "replication_factor": r.ReplicationFactor, "write_consistency_factor": r.WriteConsistencyFactor} {
		if v != nil && *v == 0 {
			return nil, status.Errorf(codes.InvalidArgument, "Validation error in body: [%s: value 0 invalid, must be 1 or larger]", field)
		}
	}
	c := &collection{dim: int(p.GetSize()), points: map[string]*point{}, indexes: map[string]qdrant.FieldType{}, meta: r.GetMetadata(),
		shards: 1, replication: 1, writeConsistency: 1}
	if r.ShardNumber != nil {
		c.shards = *r.ShardNumber
	}
	if r.ReplicationFactor != nil {
		c.replication = *r.ReplicationFactor
	}
	if r.WriteConsistencyFactor != nil {
		c.writeConsistency = *r.WriteConsistencyFactor
	}
	s.colls[r.GetCollectionName()] = c
	return &qdrant.CollectionOperationResponse{Result: true}, nil
}

// Get describes a collection.
func (s collSvc) Get(ctx context.Context, r *qdrant.GetCollectionInfoRequest) (*qdrant.GetCollectionInfoResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, err := s.resolve(r.GetCollectionName())
	if err != nil {
		return nil, err
	}
	n := uint64(len(c.points))
	schema := map[string]*qdrant.PayloadSchemaInfo{}
	for f, t := range c.indexes {
		schema[f] = &qdrant.PayloadSchemaInfo{DataType: qdrant.PayloadSchemaType(t + 1)}
	}
	return &qdrant.GetCollectionInfoResponse{Result: &qdrant.CollectionInfo{
		Status:      qdrant.CollectionStatus_Green,
		PointsCount: &n,
		Config: &qdrant.CollectionConfig{
			Params: &qdrant.CollectionParams{
				VectorsConfig:          qdrant.NewVectorsConfig(&qdrant.VectorParams{Size: uint64(c.dim), Distance: qdrant.Distance_Cosine}),
				ShardNumber:            c.shards,
				ReplicationFactor:      &c.replication,
				WriteConsistencyFactor: &c.writeConsistency,
			},
			Metadata: c.meta,
		},
		PayloadSchema: schema,
	}}, nil
}

// List lists collections.
func (s collSvc) List(ctx context.Context, _ *qdrant.ListCollectionsRequest) (*qdrant.ListCollectionsResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := &qdrant.ListCollectionsResponse{}
	for n := range s.colls {
		out.Collections = append(out.Collections, &qdrant.CollectionDescription{Name: n})
	}
	sort.Slice(out.Collections, func(i, j int) bool { return out.Collections[i].Name < out.Collections[j].Name })
	return out, nil
}

// CollectionExists reports existence.
func (s collSvc) CollectionExists(ctx context.Context, r *qdrant.CollectionExistsRequest) (*qdrant.CollectionExistsResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, err := s.resolve(r.GetCollectionName())
	return &qdrant.CollectionExistsResponse{Result: &qdrant.CollectionExists{Exists: err == nil}}, nil
}

// Delete drops a collection and the aliases pointing at it.
func (s collSvc) Delete(ctx context.Context, r *qdrant.DeleteCollection) (*qdrant.CollectionOperationResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.colls[r.GetCollectionName()]; !ok {
		return nil, notFound(r.GetCollectionName())
	}
	delete(s.colls, r.GetCollectionName())
	for a, c := range s.aliases {
		if c == r.GetCollectionName() {
			delete(s.aliases, a)
		}
	}
	return &qdrant.CollectionOperationResponse{Result: true}, nil
}

// UpdateAliases applies every action or none.
func (s collSvc) UpdateAliases(ctx context.Context, r *qdrant.ChangeAliases) (*qdrant.CollectionOperationResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := map[string]string{}
	for k, v := range s.aliases {
		next[k] = v
	}
	for _, op := range r.GetActions() {
		switch a := op.GetAction().(type) {
		case *qdrant.AliasOperations_CreateAlias:
			ca := a.CreateAlias
			if _, ok := s.colls[ca.GetCollectionName()]; !ok {
				return nil, notFound(ca.GetCollectionName())
			}
			if _, ok := s.colls[ca.GetAliasName()]; ok {
				return nil, status.Errorf(codes.InvalidArgument, "Wrong input: Collection `%s` already exists!", ca.GetAliasName())
			}
			if _, ok := next[ca.GetAliasName()]; ok {
				return nil, status.Errorf(codes.InvalidArgument, "Wrong input: Alias `%s` already exists!", ca.GetAliasName())
			}
			next[ca.GetAliasName()] = ca.GetCollectionName()
		case *qdrant.AliasOperations_DeleteAlias:
			name := a.DeleteAlias.GetAliasName()
			if _, ok := next[name]; !ok {
				return nil, status.Errorf(codes.NotFound, "Not found: Alias %s does not exists!", name)
			}
			delete(next, name)
		case *qdrant.AliasOperations_RenameAlias:
			ra := a.RenameAlias
			c, ok := next[ra.GetOldAliasName()]
			if !ok {
				return nil, status.Errorf(codes.NotFound, "Not found: Alias %s does not exists!", ra.GetOldAliasName())
			}
			delete(next, ra.GetOldAliasName())
			next[ra.GetNewAliasName()] = c
		default:
			return nil, status.Error(codes.InvalidArgument, "unknown alias action")
		}
	}
	s.aliases = next
	return &qdrant.CollectionOperationResponse{Result: true}, nil
}

// ListAliases lists aliases.
func (s collSvc) ListAliases(ctx context.Context, _ *qdrant.ListAliasesRequest) (*qdrant.ListAliasesResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := &qdrant.ListAliasesResponse{}
	for a, c := range s.aliases {
		out.Aliases = append(out.Aliases, &qdrant.AliasDescription{AliasName: a, CollectionName: c})
	}
	return out, nil
}

// ListCollectionAliases lists the aliases of one collection.
func (s collSvc) ListCollectionAliases(ctx context.Context, r *qdrant.ListCollectionAliasesRequest) (*qdrant.ListAliasesResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := &qdrant.ListAliasesResponse{}
	for a, c := range s.aliases {
		if c == r.GetCollectionName() {
			out.Aliases = append(out.Aliases, &qdrant.AliasDescription{AliasName: a, CollectionName: c})
		}
	}
	return out, nil
}

// CreateFieldIndex records a payload index.
func (s pointsSvc) CreateFieldIndex(ctx context.Context, r *qdrant.CreateFieldIndexCollection) (*qdrant.PointsOperationResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.resolve(r.GetCollectionName())
	if err != nil {
		return nil, err
	}
	if r.FieldType == nil {
		return nil, status.Error(codes.InvalidArgument, "Wrong input: field type required")
	}
	c.indexes[r.GetFieldName()] = r.GetFieldType()
	return completed(), nil
}

func completed() *qdrant.PointsOperationResponse {
	return &qdrant.PointsOperationResponse{Result: &qdrant.UpdateResult{Status: qdrant.UpdateStatus_Completed}}
}

func acknowledged() *qdrant.PointsOperationResponse {
	return &qdrant.PointsOperationResponse{Result: &qdrant.UpdateResult{Status: qdrant.UpdateStatus_Acknowledged}}
}

// pointID validates an id: uint64 or a UUID, normalised.
func pointID(id *qdrant.PointId) (string, error) {
	switch v := id.GetPointIdOptions().(type) {
	case *qdrant.PointId_Num:
		return fmt.Sprintf("n:%d", v.Num), nil
	case *qdrant.PointId_Uuid:
		u, err := uuid.Parse(v.Uuid)
		if err != nil {
			return "", status.Errorf(codes.InvalidArgument, "Unable to parse UUID: %s", v.Uuid)
		}
		return "u:" + u.String(), nil
	}
	return "", status.Error(codes.InvalidArgument, "Wrong input: empty point id")
}

func idOf(key string) *qdrant.PointId {
	if key[0] == 'u' {
		return qdrant.NewIDUUID(key[2:])
	}
	var n uint64
	fmt.Sscanf(key[2:], "%d", &n)
	return qdrant.NewIDNum(n)
}

func denseOf(v *qdrant.Vectors) []float32 {
	vec := v.GetVector()
	if d := vec.GetDense(); d != nil {
		return d.GetData()
	}
	//lint:ignore SA1019 Qdrant servers before 1.12 still answer in the deprecated field
	return vec.GetData()
}

func normalized(v []float32) []float32 {
	var n float64
	for _, x := range v {
		n += float64(x) * float64(x)
	}
	out := make([]float32, len(v))
	if n == 0 {
		return out
	}
	inv := 1 / math.Sqrt(n)
	for i, x := range v {
		out[i] = float32(float64(x) * inv)
	}
	return out
}

// later applies a write now (wait=true) or after LateWriteDelay.
func (s *Server) later(wait bool, apply func()) *qdrant.PointsOperationResponse {
	if wait {
		apply()
		return completed()
	}
	go func() {
		time.Sleep(s.LateWriteDelay)
		s.mu.Lock()
		defer s.mu.Unlock()
		apply()
	}()
	return acknowledged()
}

// Upsert validates every point, then writes them all.
func (s pointsSvc) Upsert(ctx context.Context, r *qdrant.UpsertPoints) (*qdrant.PointsOperationResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.resolve(r.GetCollectionName())
	if err != nil {
		return nil, err
	}
	pts := make([]*point, 0, len(r.GetPoints()))
	for _, p := range r.GetPoints() {
		id, err := pointID(p.GetId())
		if err != nil {
			return nil, err
		}
		v := denseOf(p.GetVectors())
		if len(v) != c.dim {
			return nil, status.Errorf(codes.InvalidArgument, "Wrong input: Vector dimension error: expected dim: %d, got %d", c.dim, len(v))
		}
		pts = append(pts, &point{id: id, vector: normalized(v), payload: p.GetPayload()})
	}
	return s.later(r.GetWait(), func() {
		for _, p := range pts {
			c.points[p.id] = p
		}
	}), nil
}

// Delete deletes points by id.
func (s pointsSvc) Delete(ctx context.Context, r *qdrant.DeletePoints) (*qdrant.PointsOperationResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.resolve(r.GetCollectionName())
	if err != nil {
		return nil, err
	}
	sel, ok := r.GetPoints().GetPointsSelectorOneOf().(*qdrant.PointsSelector_Points)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "the fake deletes by ids only")
	}
	var ids []string
	for _, id := range sel.Points.GetIds() {
		k, err := pointID(id)
		if err != nil {
			return nil, err
		}
		ids = append(ids, k)
	}
	return s.later(r.GetWait(), func() {
		for _, k := range ids {
			delete(c.points, k)
		}
	}), nil
}

func withVectors(sel *qdrant.WithVectorsSelector) bool {
	e, ok := sel.GetSelectorOptions().(*qdrant.WithVectorsSelector_Enable)
	return ok && e.Enable
}

func withPayload(sel *qdrant.WithPayloadSelector) bool {
	e, ok := sel.GetSelectorOptions().(*qdrant.WithPayloadSelector_Enable)
	return ok && e.Enable
}

func vectorsOut(v []float32) *qdrant.VectorsOutput {
	return &qdrant.VectorsOutput{VectorsOptions: &qdrant.VectorsOutput_Vector{Vector: &qdrant.VectorOutput{
		Vector: &qdrant.VectorOutput_Dense{Dense: &qdrant.DenseVector{Data: v}},
	}}}
}

// Get retrieves points by id.
func (s pointsSvc) Get(ctx context.Context, r *qdrant.GetPoints) (*qdrant.GetResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, err := s.resolve(r.GetCollectionName())
	if err != nil {
		return nil, err
	}
	out := &qdrant.GetResponse{}
	for _, id := range r.GetIds() {
		k, err := pointID(id)
		if err != nil {
			return nil, err
		}
		p, ok := c.points[k]
		if !ok {
			continue
		}
		rp := &qdrant.RetrievedPoint{Id: idOf(k)}
		if withPayload(r.GetWithPayload()) {
			rp.Payload = p.payload
		}
		if withVectors(r.GetWithVectors()) {
			rp.Vectors = vectorsOut(p.vector)
		}
		out.Result = append(out.Result, rp)
	}
	return out, nil
}

// Count counts points matching a filter.
func (s pointsSvc) Count(ctx context.Context, r *qdrant.CountPoints) (*qdrant.CountResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, err := s.resolve(r.GetCollectionName())
	if err != nil {
		return nil, err
	}
	if err := checkFilter(c, r.GetFilter()); err != nil {
		return nil, err
	}
	n := 0
	for _, p := range c.points {
		if matchFilter(r.GetFilter(), p) {
			n++
		}
	}
	return &qdrant.CountResponse{Result: &qdrant.CountResult{Count: uint64(n)}}, nil
}

// Query runs a nearest query by vector or by point id (exact scan).
func (s pointsSvc) Query(ctx context.Context, r *qdrant.QueryPoints) (*qdrant.QueryResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, err := s.resolve(r.GetCollectionName())
	if err != nil {
		return nil, err
	}
	if len(r.GetPrefetch()) > 0 || r.Using != nil || r.LookupFrom != nil {
		return nil, status.Error(codes.Unimplemented, "the fake does not support prefetch, using or lookup_from")
	}
	nearest := r.GetQuery().GetNearest()
	if nearest == nil {
		return nil, status.Error(codes.InvalidArgument, "Wrong input: the fake supports nearest queries only")
	}
	var q []float32
	switch in := nearest.GetVariant().(type) {
	case *qdrant.VectorInput_Dense:
		q = in.Dense.GetData()
	case *qdrant.VectorInput_Id:
		k, err := pointID(in.Id)
		if err != nil {
			return nil, err
		}
		p, ok := c.points[k]
		if !ok {
			return nil, status.Errorf(codes.NotFound, "Not found: No point with id %s found", k[2:])
		}
		q = p.vector
	default:
		return nil, status.Error(codes.InvalidArgument, "Wrong input: unsupported query input")
	}
	if len(q) != c.dim {
		return nil, status.Errorf(codes.InvalidArgument, "Wrong input: Vector dimension error: expected dim: %d, got %d", c.dim, len(q))
	}
	if err := checkFilter(c, r.GetFilter()); err != nil {
		return nil, err
	}
	q = normalized(q)
	type scored struct {
		p     *point
		score float32
	}
	var all []scored
	for _, p := range c.points {
		if !matchFilter(r.GetFilter(), p) {
			continue
		}
		var d float32
		for i := range q {
			d += q[i] * p.vector[i]
		}
		if r.ScoreThreshold != nil && d < r.GetScoreThreshold() {
			continue
		}
		all = append(all, scored{p, d})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].score != all[j].score {
			return all[i].score > all[j].score
		}
		return all[i].p.id < all[j].p.id
	})
	limit := 10
	if r.Limit != nil {
		limit = int(r.GetLimit())
	}
	off := int(r.GetOffset())
	out := &qdrant.QueryResponse{}
	for i := off; i < len(all) && i < off+limit; i++ {
		sp := &qdrant.ScoredPoint{Id: idOf(all[i].p.id), Score: all[i].score}
		if withPayload(r.GetWithPayload()) {
			sp.Payload = all[i].p.payload
		}
		if withVectors(r.GetWithVectors()) {
			sp.Vectors = vectorsOut(all[i].p.vector)
		}
		out.Result = append(out.Result, sp)
	}
	return out, nil
}
