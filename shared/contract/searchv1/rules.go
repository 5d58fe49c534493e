package searchv1

import (
	"math"
	"strings"
	"unicode/utf8"

	"github.com/lookalike-dev/lookalike/shared/apierror"
)

// Well-known payload keys. Category and brand are keyword indexes, price a
// float index and in_stock a bool index, in every backend.
const (
	KeySKU      = "sku"
	KeyTitle    = "title"
	KeyImage    = "image"
	KeyCategory = "category"
	KeyBrand    = "brand"
	KeyPrice    = "price"
	KeyInStock  = "in_stock"
)

// Request limits beside MaxTopK, MaxDim and MaxUpsertBatch.
const (
	DefaultTopK = 10
	MaxOffset   = 10000
	MaxSKUBytes = 512
	// MaxFilterValues bounds the categories and the brands of one filter.
	MaxFilterValues = 256
)

// Match reports whether a payload passes the filter: category and brand
// "in", price range inclusive, in_stock equal. A payload without a filtered
// field, or with it of another type, does not match. A nil filter matches
// everything.
func (f *Filter) Match(p Payload) bool {
	if f == nil {
		return true
	}
	if len(f.Category) > 0 && !keywordIn(p[KeyCategory], f.Category) {
		return false
	}
	if len(f.Brand) > 0 && !keywordIn(p[KeyBrand], f.Brand) {
		return false
	}
	if f.PriceMin != nil || f.PriceMax != nil {
		price, ok := Number(p[KeyPrice])
		if !ok || (f.PriceMin != nil && price < *f.PriceMin) || (f.PriceMax != nil && price > *f.PriceMax) {
			return false
		}
	}
	if f.InStock != nil {
		b, ok := p[KeyInStock].(bool)
		if !ok || b != *f.InStock {
			return false
		}
	}
	return true
}

func keywordIn(v any, set []string) bool {
	s, ok := v.(string)
	if !ok {
		return false
	}
	for _, w := range set {
		if s == w {
			return true
		}
	}
	return false
}

// Number reads a numeric payload value, as decoded from JSON or set in Go.
func Number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	}
	return 0, false
}

// ValidPart checks a catalog or model name: a name without "__", so
// "catalog__model" splits one way only.
func ValidPart(s string) bool { return ValidName(s) && !strings.Contains(s, "__") }

// SplitCollection splits "catalog__model" into its parts.
func SplitCollection(name string) (catalog, model string, ok bool) {
	catalog, model, ok = strings.Cut(name, "__")
	if !ok || !ValidPart(catalog) || !ValidPart(model) {
		return "", "", false
	}
	return catalog, model, true
}

// BadName is the refusal of an invalid catalog, model, alias or collection name.
func BadName(what, name string) *apierror.Error {
	return apierror.BadRequest(CodeInvalidName, "%s %q must match [a-z0-9][a-z0-9._-]{0,62} without \"__\"", what, name)
}

// CheckSKU refuses an empty, over-long or non-UTF-8 SKU.
func CheckSKU(sku string) error {
	if sku == "" || len(sku) > MaxSKUBytes || !utf8.ValidString(sku) {
		return apierror.BadRequest(CodeInvalidSKU, "sku must be 1..%d bytes of UTF-8", MaxSKUBytes)
	}
	return nil
}

// CheckVector refuses a vector that does not fit a collection of collDim
// dimensions named coll (dim is the request's declared dimension, 0 for
// none), or that has a NaN, an infinity or only zeros.
func CheckVector(v []float32, dim int, coll string, collDim int, what string) error {
	if dim != 0 && dim != collDim {
		return apierror.BadRequest(apierror.CodeDimensionMismatch, "%s: dim %d, collection %s has dim %d", what, dim, coll, collDim)
	}
	if len(v) != collDim {
		return apierror.BadRequest(apierror.CodeDimensionMismatch, "%s: vector of %d values, collection %s has dim %d", what, len(v), coll, collDim)
	}
	nz := false
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return apierror.BadRequest(CodeInvalidVector, "%s: vector has a NaN or infinite value", what)
		}
		nz = nz || x != 0
	}
	if !nz {
		return apierror.BadRequest(CodeInvalidVector, "%s: vector is all zeros", what)
	}
	return nil
}

// CheckPayload refuses a well-known key of the wrong type, and a payload sku
// that is not the point's.
func CheckPayload(sku string, p Payload) error {
	for _, k := range []string{KeyCategory, KeyBrand, KeyTitle, KeyImage} {
		if v, ok := p[k]; ok && v != nil {
			if _, ok := v.(string); !ok {
				return apierror.BadRequest(CodeInvalidPayload, "%s: payload %q must be a string", sku, k)
			}
		}
	}
	if v, ok := p[KeyPrice]; ok && v != nil {
		if f, ok := Number(v); !ok || math.IsNaN(f) || math.IsInf(f, 0) {
			return apierror.BadRequest(CodeInvalidPayload, "%s: payload price must be a number", sku)
		}
	}
	if v, ok := p[KeyInStock]; ok && v != nil {
		if _, ok := v.(bool); !ok {
			return apierror.BadRequest(CodeInvalidPayload, "%s: payload in_stock must be a boolean", sku)
		}
	}
	if v, ok := p[KeySKU]; ok && v != sku {
		return apierror.BadRequest(CodeInvalidPayload, "payload sku %v differs from the point's sku %q", v, sku)
	}
	return nil
}

// CheckQuery refuses out-of-range paging, score and filter parameters and
// returns top_k with its default applied.
func CheckQuery(topK, offset int, minScore *float32, f *Filter) (int, error) {
	if topK == 0 {
		topK = DefaultTopK
	}
	if topK < 0 || topK > MaxTopK {
		return 0, apierror.BadRequest(apierror.CodeInvalidArgument, "top_k must be 1..%d, got %d", MaxTopK, topK)
	}
	if offset < 0 || offset > MaxOffset {
		return 0, apierror.BadRequest(apierror.CodeInvalidArgument, "offset must be 0..%d, got %d", MaxOffset, offset)
	}
	if minScore != nil && (math.IsNaN(float64(*minScore)) || *minScore < -1 || *minScore > 1) {
		return 0, apierror.BadRequest(apierror.CodeInvalidArgument, "min_score must be a cosine in -1..1")
	}
	if f != nil {
		if f.PriceMin != nil && f.PriceMax != nil && *f.PriceMin > *f.PriceMax {
			return 0, apierror.BadRequest(CodeInvalidFilter, "price_min %v is above price_max %v", *f.PriceMin, *f.PriceMax)
		}
		for _, p := range []*float64{f.PriceMin, f.PriceMax} {
			if p != nil && (math.IsNaN(*p) || math.IsInf(*p, 0)) {
				return 0, apierror.BadRequest(CodeInvalidFilter, "price bounds must be finite")
			}
		}
		if len(f.Category) > MaxFilterValues || len(f.Brand) > MaxFilterValues {
			return 0, apierror.BadRequest(CodeInvalidFilter, "at most %d categories and brands", MaxFilterValues)
		}
	}
	return topK, nil
}
