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
