package searchv1test

import (
	"math"

	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
)

// FilterItem is a product of the filter table: its payload and the cosine
// its vector is given against the table's query.
type FilterItem struct {
	SKU     string
	Payload searchv1.Payload
	Cosine  float64
}

// FilterCase is a filter and the SKUs it keeps, best first.
type FilterCase struct {
	Name   string
	Filter searchv1.Filter
	Want   []string
}

// FilterTable is the one table of filter cases that the contract's
// Filter.Match, this package's server and every store pass. s7 lacks every
// filtered field, so it matches no filter on them.
func FilterTable() ([]FilterItem, []FilterCase) {
	item := func(sku, cat, brand string, price float64, stock bool, cos float64) FilterItem {
		return FilterItem{SKU: sku, Cosine: cos, Payload: searchv1.Payload{
			searchv1.KeyCategory: cat, searchv1.KeyBrand: brand, searchv1.KeyPrice: price, searchv1.KeyInStock: stock}}
	}
	items := []FilterItem{
		item("s1", "shoes", "acme", 50, true, 0.99),
		item("s2", "shoes", "zeta", 120, false, 0.95),
		item("s3", "bags", "acme", 80, true, 0.9),
		item("s4", "bags", "omni", 200, true, 0.85),
		item("s5", "hats", "zeta", 15.5, false, 0.8),
		item("s6", "hats", "acme", 30, true, 0.7),
		{SKU: "s7", Cosine: 0.6, Payload: searchv1.Payload{searchv1.KeyTitle: "no filtered fields"}},
	}
	p := func(f float64) *float64 { return &f }
	b := func(v bool) *bool { return &v }
	cases := []FilterCase{
		{"none", searchv1.Filter{}, []string{"s1", "s2", "s3", "s4", "s5", "s6", "s7"}},
		{"category in one", searchv1.Filter{Category: []string{"bags"}}, []string{"s3", "s4"}},
		{"category in two", searchv1.Filter{Category: []string{"bags", "hats"}}, []string{"s3", "s4", "s5", "s6"}},
		{"brand", searchv1.Filter{Brand: []string{"zeta"}}, []string{"s2", "s5"}},
		{"price min", searchv1.Filter{PriceMin: p(100)}, []string{"s2", "s4"}},
		{"price max inclusive", searchv1.Filter{PriceMax: p(50)}, []string{"s1", "s5", "s6"}},
		{"price range", searchv1.Filter{PriceMin: p(30), PriceMax: p(80)}, []string{"s1", "s3", "s6"}},
		{"in stock", searchv1.Filter{InStock: b(true)}, []string{"s1", "s3", "s4", "s6"}},
		{"out of stock, not unknown", searchv1.Filter{InStock: b(false)}, []string{"s2", "s5"}},
		{"combined", searchv1.Filter{Category: []string{"shoes", "hats"}, Brand: []string{"acme"}, InStock: b(true), PriceMax: p(40)}, []string{"s6"}},
		{"nothing", searchv1.Filter{Category: []string{"none"}}, []string{}},
	}
	return items, cases
}

// FilterDim is the dimension of the table's vectors.
const FilterDim = 8

// Vector is item i's vector: at its cosine from FilterQuery, each item on an
// axis of its own.
func (it FilterItem) Vector(i int) []float32 {
	v := make([]float32, FilterDim)
	v[0] = float32(it.Cosine)
	v[1+i%(FilterDim-1)] = float32(math.Sqrt(1 - it.Cosine*it.Cosine))
	return v
}

// FilterQuery is the table's query vector.
func FilterQuery() []float32 {
	v := make([]float32, FilterDim)
	v[0] = 1
	return v
}
