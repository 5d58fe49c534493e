package gatewayv1

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestListDecodes(t *testing.T) {
	tests := []struct {
		in   string
		want List
		ok   bool
	}{
		{`"bags"`, List{"bags"}, true},
		{`"bags, shoes,,"`, List{"bags", "shoes"}, true},
		{`["bags","shoes"]`, List{"bags", "shoes"}, true},
		{`""`, nil, true},
		{`3`, nil, false},
		{`[1]`, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			var f Filters
			err := json.Unmarshal([]byte(`{"category":`+tc.in+`}`), &f)
			if (err == nil) != tc.ok || (tc.ok && !slices.Equal(f.Category, tc.want)) {
				t.Fatalf("got %q, %v; want %q (ok %v)", f.Category, err, tc.want, tc.ok)
			}
		})
	}
}
