package searchv1_test

import (
	"slices"
	"testing"

	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1/searchv1test"
)

func TestFilterMatch(t *testing.T) {
	items, cases := searchv1test.FilterTable()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			got := []string{}
			for _, it := range items { // the table lists items best first
				if tc.Filter.Match(it.Payload) {
					got = append(got, it.SKU)
				}
			}
			if !slices.Equal(got, tc.Want) {
				t.Fatalf("got %v, want %v", got, tc.Want)
			}
		})
	}
	var none *searchv1.Filter
	if !none.Match(searchv1.Payload{}) {
		t.Fatal("a nil filter matches everything")
	}
}

func TestFilterMatchEdges(t *testing.T) {
	p := searchv1.Payload{searchv1.KeyCategory: "shoes", searchv1.KeyBrand: "acme", searchv1.KeyPrice: 50.0, searchv1.KeyInStock: true}
	f := func(v float64) *float64 { return &v }
	b := func(v bool) *bool { return &v }
	tests := []struct {
		name    string
		filter  *searchv1.Filter
		payload searchv1.Payload
		want    bool
	}{
		{"nil filter", nil, p, true},
		{"empty filter", &searchv1.Filter{}, p, true},
		{"category in", &searchv1.Filter{Category: []string{"bags", "shoes"}}, p, true},
		{"category out", &searchv1.Filter{Category: []string{"bags"}}, p, false},
		{"brand", &searchv1.Filter{Brand: []string{"acme"}}, p, true},
		{"price inclusive bounds", &searchv1.Filter{PriceMin: f(50), PriceMax: f(50)}, p, true},
		{"price below", &searchv1.Filter{PriceMin: f(50.01)}, p, false},
		{"in stock", &searchv1.Filter{InStock: b(true)}, p, true},
		{"out of stock wanted", &searchv1.Filter{InStock: b(false)}, p, false},
		{"missing field never matches", &searchv1.Filter{Brand: []string{"acme"}}, searchv1.Payload{}, false},
		{"wrong type never matches", &searchv1.Filter{PriceMax: f(100)}, searchv1.Payload{searchv1.KeyPrice: "cheap"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.filter.Match(tc.payload); got != tc.want {
				t.Fatalf("got %v want %v", got, tc.want)
			}
		})
	}
}
