package httpapi

import (
	"net/http"
	"testing"

	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
)

func TestSkips(t *testing.T) {
	tests := []struct {
		values []string
		want   bool
	}{
		{nil, false},
		{[]string{"phash"}, true},
		{[]string{"PHash"}, true},
		{[]string{"exif, phash"}, true},
		{[]string{"exif", "phash"}, true},
		{[]string{"phashes"}, false},
		{[]string{""}, false},
	}
	for _, tc := range tests {
		h := http.Header{}
		for _, v := range tc.values {
			h.Add(preprocessv1.HeaderSkip, v)
		}
		if got := skips(h, preprocessv1.SkipPHash); got != tc.want {
			t.Errorf("skips(%q) = %v, want %v", tc.values, got, tc.want)
		}
	}
}
