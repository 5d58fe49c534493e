package fake

import (
	"context"
	"slices"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func metadataFrom(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("api-key"); len(v) > 0 {
		return v[0]
	}
	return ""
}

// checkFilter refuses conditions on fields without a fitting payload index.
func checkFilter(c *collection, f *qdrant.Filter) error {
	if f == nil {
		return nil
	}
	for _, group := range [][]*qdrant.Condition{f.GetMust(), f.GetShould(), f.GetMustNot()} {
		for _, cond := range group {
			switch k := cond.GetConditionOneOf().(type) {
			case *qdrant.Condition_Field:
				fc := k.Field
				var want []qdrant.FieldType
				switch {
				case fc.GetRange() != nil:
					want = []qdrant.FieldType{qdrant.FieldType_FieldTypeFloat, qdrant.FieldType_FieldTypeInteger}
				case fc.GetMatch().GetBoolean() || isBool(fc.GetMatch()):
					want = []qdrant.FieldType{qdrant.FieldType_FieldTypeBool}
				case fc.GetMatch() != nil:
					want = []qdrant.FieldType{qdrant.FieldType_FieldTypeKeyword}
				default:
					return status.Error(codes.Unimplemented, "the fake supports match and range conditions only")
				}
				got, ok := c.indexes[fc.GetKey()]
				if !ok || !slices.Contains(want, got) {
					return status.Errorf(codes.InvalidArgument, "Bad request: Index required but not found for \"%s\" of one of the following types: %v. Help: Create an index for this key or use a different filter.", fc.GetKey(), want)
				}
			case *qdrant.Condition_HasId:
				for _, id := range k.HasId.GetHasId() {
					if _, err := pointID(id); err != nil {
						return err
					}
				}
			case *qdrant.Condition_Filter:
				if err := checkFilter(c, k.Filter); err != nil {
					return err
				}
			default:
				return status.Error(codes.Unimplemented, "the fake supports field, has_id and nested filter conditions only")
			}
		}
	}
	return nil
}

func isBool(m *qdrant.Match) bool {
	_, ok := m.GetMatchValue().(*qdrant.Match_Boolean)
	return ok
}

func matchFilter(f *qdrant.Filter, p *point) bool {
	if f == nil {
		return true
	}
	for _, c := range f.GetMust() {
		if !matchCond(c, p) {
			return false
		}
	}
	for _, c := range f.GetMustNot() {
		if matchCond(c, p) {
			return false
		}
	}
	if len(f.GetShould()) > 0 {
		for _, c := range f.GetShould() {
			if matchCond(c, p) {
				return true
			}
		}
		return false
	}
	return true
}

func matchCond(c *qdrant.Condition, p *point) bool {
	switch k := c.GetConditionOneOf().(type) {
	case *qdrant.Condition_HasId:
		for _, id := range k.HasId.GetHasId() {
			if key, _ := pointID(id); key == p.id {
				return true
			}
		}
		return false
	case *qdrant.Condition_Filter:
		return matchFilter(k.Filter, p)
	case *qdrant.Condition_Field:
		fc := k.Field
		v, ok := p.payload[fc.GetKey()]
		if !ok {
			return false
		}
		if r := fc.GetRange(); r != nil {
			var x float64
			switch n := v.GetKind().(type) {
			case *qdrant.Value_DoubleValue:
				x = n.DoubleValue
			case *qdrant.Value_IntegerValue:
				x = float64(n.IntegerValue)
			default:
				return false
			}
			return (r.Gte == nil || x >= r.GetGte()) && (r.Lte == nil || x <= r.GetLte()) &&
				(r.Gt == nil || x > r.GetGt()) && (r.Lt == nil || x < r.GetLt())
		}
		switch m := fc.GetMatch().GetMatchValue().(type) {
		case *qdrant.Match_Keyword:
			return v.GetStringValue() == m.Keyword && isString(v)
		case *qdrant.Match_Keywords:
			return isString(v) && slices.Contains(m.Keywords.GetStrings(), v.GetStringValue())
		case *qdrant.Match_Boolean:
			b, ok := v.GetKind().(*qdrant.Value_BoolValue)
			return ok && b.BoolValue == m.Boolean
		}
	}
	return false
}

func isString(v *qdrant.Value) bool {
	_, ok := v.GetKind().(*qdrant.Value_StringValue)
	return ok
}
